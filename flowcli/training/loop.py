"""The training loop, reporting through an event callback: train() sets a run up, _loop() trains it.

A run folder holds config.json, log.jsonl (one JSON line per epoch), last.safetensors and
best.safetensors (model weights, loadable by every command), state.safetensors (optimizer and
schedule, for resume) and, for folder data, split.json. Every file is written atomically.

Resuming with the saved epochs and minutes continues exactly as a straight run would. Resuming with
more of either extends the run: what was left of the schedule at the saved step is stretched over the
new remainder, so the learning rate never jumps (a finished run goes on at its final learning rate).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import (check_architecture, load_state, load_training_state, read_config, read_state,
                          read_training_extra, save_training_state, save_weights)
from ..data.splits import save_split
from ..device import check_compile_toolchain, cpu_has_bf16
from ..errors import CheckpointError, DataError, TrainingError
from ..model import FlowNetS, ModelConfig
from ..results import JsonResult
from ..widen import widen
from .config import TrainConfig, check_resumable, check_same_data, read_run_config, show
from .loss import LOSSES, masked_mean_epe
from .rundir import NewRunFolder, append_log, last_log_record, write_run_config
from .sources import FolderSource, SynthSource, epoch_seed
from .steps import QueuedStep, StepClock, StepFigures, collect

Event = Callable[[str, dict], None]


@dataclass(frozen=True)
class TrainResult(JsonResult):
    """Where a train() call left its run: how far it got, its figures, and its best weights."""

    run_dir: str
    epoch: int  # epochs done in all (the run's last logged epoch)
    epochs: int  # epochs the run is planned for
    trained_epochs: int  # epochs this call trained; 0 when the run was already finished
    stopped_by: str  # "epochs", or "minutes" when the time budget ran out
    best_val_epe: float
    val_epe: float  # the last epoch's (NaN on DDP ranks other than 0)
    train_epe: float
    elapsed_s: float
    minutes: float | None  # the time budget
    weights: str  # best.safetensors


@dataclass(frozen=True)
class Schedule:
    """Where a step lies in the run, in [0, 1]: the larger of its share of the steps and of the time.

    `anchor` (step, seconds, progress) is where an extended run resumed; the schedule left there is
    stretched over the new remainder."""

    total_steps: int
    budget_s: float | None
    anchor: tuple[int, float, float] = (0, 0.0, 0.0)

    def progress(self, step: int, elapsed_s: float) -> float:
        start, start_s, done = self.anchor
        share = (step - start) / max(self.total_steps - start, 1)
        if self.budget_s:
            share = max(share, (elapsed_s - start_s) / max(self.budget_s - start_s, 1e-9))
        return done + (1 - done) * share


def lr_at(config: TrainConfig, progress: float) -> float:
    """OneCycle-style: linear warm-up to lr, then cosine decay to 1% of it; progress in [0, 1]."""
    if config.schedule == "constant":
        return config.lr
    if progress < config.warmup:
        return config.lr * max(progress / config.warmup, 0.01)
    rest = (progress - config.warmup) / max(1e-9, 1 - config.warmup)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0))))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv weights only, never on biases or BatchNorm (as FlowNetPytorch); fused
    kernels on CUDA, where the small network's steps are launch-bound."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if all(p.is_cuda for p in model.parameters()) else {}
    optimizer = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer(groups, lr=config.lr, **fused)


def distributed_context() -> tuple[int, int]:
    """(rank, world_size) under torchrun, (0, 1) otherwise; initialises the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def set_train_mode(model: torch.nn.Module, freeze_bn: bool) -> None:
    """Training mode, with BatchNorm layers left in eval mode when freeze_bn, so that fine-tuning with
    small batches keeps the running statistics of the weights it starts from (as RAFT fine-tunes)."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def validate(model: FlowNetS, source, *, amp_dtype=None) -> float:
    """Mean EPE over the validation set at full resolution (eval-mode forward, padding included).

    Leaves every module in the mode it found it in."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for img1, img2, flow, valid in source.validation():
            with torch.autocast(img1.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(img1, img2)
            total += masked_mean_epe(pred.float(), flow, valid).item() * img1.shape[0]
            count += img1.shape[0]
    for module, training in modes:
        module.training = training
    return total / max(count, 1)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA, and on CPUs with native bf16 (there it is faster than fp32)."""
    if not config.amp:
        return None
    if device.type == "cuda" or cpu_has_bf16():
        return torch.bfloat16
    return None


def over_budget(budget_s: float | None, clock: float, world: int, device: torch.device) -> bool:
    """True once the time budget is spent; under DDP every rank agrees (rank clocks differ)."""
    if not budget_s:
        return False
    if world == 1:  # a host comparison; a device tensor's .item() would wait for the queued steps
        return time.perf_counter() - clock > budget_s
    over = torch.tensor([float(time.perf_counter() - clock > budget_s)], device=device)
    torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
    return bool(over.item())


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode() -> str | None:
    """torch.compile's mode for the training step, from FLOWCLI_COMPILE_MODE: a knob for the GPU
    script's probes (reduce-overhead adds CUDA graphs; benchmarks/README.md, gpu_finetune), not an option
    until it is measured."""
    mode = os.environ.get("FLOWCLI_COMPILE_MODE") or None
    if mode is not None and mode not in COMPILE_MODES:
        raise TrainingError(f"FLOWCLI_COMPILE_MODE={mode}: choose one of {', '.join(COMPILE_MODES)}")
    return mode


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def read_init(path: Path, architecture: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """The weights to fine-tune from: the file must hold this very architecture, or the same one
    narrower by a whole factor, which is grown to it computing the same flow (flowcli.widen)."""
    held = read_config(path)
    if held.width < architecture.width and replace(held, width=architecture.width) == architecture:
        try:
            return widen(read_state(path), held, architecture.width, seed=seed)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
    check_architecture(path, held, architecture,
                       wanted="training asks for {asked} (leave --width out to take the file's)")
    return read_state(path)


def make_source(config: TrainConfig, data_dir: str | None, device: torch.device, rank: int, world: int,
                strict: bool):
    if data_dir is not None:
        if config.synth_motion != "chairs":
            raise DataError(f"synth_motion={show(config.synth_motion)}: a motion profile is for generated data; "
                            f"{data_dir} has its own motions")
        return FolderSource(Path(data_dir), config, device=device, world_size=world, strict=strict)
    if config.augment and any(c > s for c, s in zip(config.crop, config.synth_size)):
        raise DataError(f"crop={show(config.crop)}: larger than the generated scenes "
                        f"({show(config.synth_size)})")
    return SynthSource(config, device=device, rank=rank)


def make_augmenter(config: TrainConfig, folder_data: bool):
    if not config.augment:
        return None
    from ..data.augment import AugmentConfig, augment

    # Generated scenes are already random affine layers: resampling them again only blurs.
    geometric = config.geometric if config.geometric is not None else folder_data
    aug_config = AugmentConfig(crop=config.crop, geometric=geometric)
    return lambda batch, gen: augment(*batch, config=aug_config, generator=gen)


def build_model(config: TrainConfig, architecture: ModelConfig, init: dict | None, device: torch.device) -> FlowNetS:
    """The seeded network (or the init weights), channels-last on `device`."""
    torch.manual_seed(config.seed)
    model = FlowNetS(architecture)
    if init is not None:
        load_state(model, init, config.init)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest conv kernels once
    return model.to(device, memory_format=torch.channels_last)  # channels-last convs are faster


@dataclass(frozen=True)
class Resumed:
    """What a resumed run starts from: its saved config, data and training-state scalars."""

    config: TrainConfig  # as saved (the run may extend it)
    data_dir: str | None
    extra: dict  # epoch, best_val_epe, elapsed_s, stopped, schedule (the plan the last epoch followed)

    @classmethod
    def read(cls, out: Path, config: TrainConfig | None, data_dir) -> "Resumed":
        saved, saved_data = read_run_config(out)
        if config is not None:
            check_resumable(saved, config, out)
        check_same_data(saved_data, data_dir, out)
        return cls(saved, saved_data, read_training_extra(out / "state.safetensors"))

    @property
    def plan(self) -> dict:
        """The epochs, minutes and anchor of the schedule the saved epoch followed."""
        return self.extra.get("schedule") or {"epochs": self.config.epochs, "minutes": self.config.minutes,
                                              "anchor": [0, 0.0, 0.0]}

    def finished(self, config: TrainConfig) -> str | None:
        """Why the run has nothing left to train under `config` ("epochs" or "minutes"), else None."""
        if self.extra["epoch"] >= config.epochs:
            return "epochs"
        if config.minutes and (self.extra["elapsed_s"] >= config.minutes * 60 or (
                self.extra.get("stopped") == "minutes" and config.minutes <= (self.plan["minutes"] or 0))):
            return "minutes"
        return None

    def schedule(self, config: TrainConfig, steps_per_epoch: int) -> Schedule:
        """The saved schedule; re-anchored at the saved step when the run is extended."""
        plan = self.plan
        old = Schedule(plan["epochs"] * steps_per_epoch, _budget_s(plan["minutes"]), tuple(plan["anchor"]))
        new = Schedule(config.epochs * steps_per_epoch, _budget_s(config.minutes), old.anchor)
        if (new.total_steps, new.budget_s) == (old.total_steps, old.budget_s):
            return old
        step, spent = self.extra["epoch"] * steps_per_epoch, self.extra["elapsed_s"]
        return Schedule(new.total_steps, new.budget_s, (step, spent, min(1.0, old.progress(step, spent))))


def _budget_s(minutes: float | None) -> float | None:
    return minutes * 60 if minutes else None


def train(
    config: TrainConfig | None = None,
    *,
    output: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    on_event: Event | None = None,
    strict: bool = False,
    overrides: dict | None = None,
) -> TrainResult:
    """Train FlowNetS into the run folder `output`. Data: a folder, or generated scenes when None.

    A new run refuses a folder that holds another run unless overwrite=True (which replaces that
    run's files), and removes what it wrote if it fails before its first checkpoint.
    resume=True continues the run in `output` from its saved config (config may be None, or change
    only epochs, minutes and num_workers: more of either extends the run; see the module docstring).
    strict=True refuses a folder with incomplete triplets instead of warning about them.
    overrides ({field: value}, config.preset_overrides) is recorded in config.json beside the config:
    the options that changed the preset.
    """
    emit = on_event or (lambda kind, info: None)
    out = Path(output)
    rank, world = distributed_context()
    device = torch.device(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    resumed, folder = None, None
    if resume:
        if overwrite:
            raise TrainingError("overwrite=True: a resumed run goes on in its own folder; choose one of the two")
        resumed = Resumed.read(out, config, data_dir)
        config, data_dir = config if config is not None else resumed.config, resumed.data_dir
        if resumed.finished(config):
            return _finished_result(out, config, resumed)
    elif config is None:
        raise TrainingError("config=None: a new run needs a TrainConfig (or resume=True)")
    if config.compile:
        check_compile_toolchain(device)
    if not resume:
        folder = NewRunFolder(out, overwrite=overwrite)  # refuses another run's folder before any work
        if world > 1:
            torch.distributed.barrier()  # every rank has checked the folder before rank 0 writes to it
        if rank != 0:
            folder = None
    data_dir = str(Path(data_dir).resolve()) if data_dir is not None else None

    architecture = config.model_config()
    init = read_init(Path(config.init), architecture, config.seed) if config.init and not resume else None
    source = make_source(config, data_dir, device, rank, world, strict)  # bad data fails before the model
    if source.incomplete:
        emit("warning", {"message": f"{len(source.incomplete)} incomplete triplet(s) skipped: "
                         + "; ".join(source.incomplete[:5])})
    model = build_model(config, architecture, init, device)
    optimizer = make_optimizer(model, config)
    extra = load_training_state(out / "state.safetensors", model, optimizer) if resumed else {}
    steps_per_epoch = source.steps_per_epoch
    schedule = (resumed.schedule(config, steps_per_epoch) if resumed
                else Schedule(config.epochs * steps_per_epoch, _budget_s(config.minutes)))
    try:
        if folder is not None:
            folder.create()
            write_run_config(out, config, data_dir, overrides=overrides or {})
            if isinstance(source, FolderSource):
                save_split(out / "split.json", source.split)
        elif rank == 0 and config != resumed.config:
            write_run_config(out, config, data_dir)  # the extended run, for its next resume
        return _loop(model, optimizer, source, config, schedule, out, emit, rank=rank, world=world, device=device,
                     start_epoch=extra.get("epoch", 0), best=extra.get("best_val_epe", float("inf")),
                     elapsed_before=extra.get("elapsed_s", 0.0))
    except BaseException:
        if folder is not None and not (out / "state.safetensors").exists():
            folder.discard()
        raise


def _loop(model, optimizer, source, config: TrainConfig, schedule: Schedule, out: Path, emit: Event, *,
          rank: int, world: int, device: torch.device, start_epoch: int, best: float,
          elapsed_before: float) -> TrainResult:
    """Train epochs start_epoch.. until config.epochs or the time budget; checkpoints after each."""
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:  # the training steps only: validation runs the plain module on the same parameters
        net = torch.compile(net, mode=compile_mode())
    augmenter = make_augmenter(config, isinstance(source, FolderSource))
    amp_dtype = autocast_dtype(config, device)
    steps_per_epoch = source.steps_per_epoch
    emit("start", {"epochs": config.epochs, "steps_per_epoch": steps_per_epoch, "start_epoch": start_epoch,
                   "params": sum(p.numel() for p in model.parameters()), "device": str(device)})
    clock = time.perf_counter() - elapsed_before
    marks = StepClock(device)
    set_train_mode(model, config.freeze_bn)
    for epoch in range(start_epoch, config.epochs):
        gen = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch, rank))
        sums = {"loss": 0.0, "epe": 0.0, "images": 0, "data_s": 0.0, "step_s": 0.0}
        batches = source.epoch(epoch)
        spent = False
        queued = None  # the step before this one, read once this one is queued (steps.py)
        for step in range(steps_per_epoch):
            started = queued.done if queued is not None else marks.mark()
            batch = next(batches, None)
            if batch is None:
                break
            if augmenter is not None:
                batch = augmenter(batch, gen)
            img1, img2, flow, valid = batch
            img1 = img1.contiguous(memory_format=torch.channels_last)
            img2 = img2.contiguous(memory_format=torch.channels_last)
            data_ready = marks.mark()
            progress = schedule.progress(epoch * steps_per_epoch + step, time.perf_counter() - clock)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, progress)
            loss, epe = optimize_step(net, model, optimizer, (img1, img2, flow, valid),
                                      clip=config.clip, amp_dtype=amp_dtype, loss=config.loss)
            this = QueuedStep(epoch=epoch + 1, step=step + 1, images=img1.shape[0], loss=loss, epe=epe,
                              started=started, data_ready=data_ready, done=marks.mark(),
                              lr=optimizer.param_groups[0]["lr"])
            if queued is not None:
                _account(collect(queued, marks), sums, emit, world, out)
            queued = this
            if over_budget(schedule.budget_s, clock, world, device):
                spent = True
                break
        if queued is not None:
            _account(collect(queued, marks), sums, emit, world, out)
        record = epoch_record(optimizer, epoch, sums, clock, world)
        if rank == 0:
            record["val_epe"] = validate(model, source, amp_dtype=amp_dtype if model_device(model).type == "cuda" else None)
        best = record["best_val_epe"] = min(best, record.get("val_epe", best))
        stopped = "minutes" if spent or over_budget(schedule.budget_s, clock, world, device) else (
            "epochs" if epoch + 1 == config.epochs else None)
        if rank == 0:
            save_epoch(model, optimizer, config, out, record, {
                "epoch": epoch + 1, "best_val_epe": best, "elapsed_s": time.perf_counter() - clock,
                "stopped": stopped,
                "schedule": {"epochs": config.epochs, "minutes": config.minutes, "anchor": list(schedule.anchor)}})
        if world > 1:
            torch.distributed.barrier()
        emit("epoch", record)
        if stopped:
            break
    if world > 1:
        torch.distributed.barrier()
    result = TrainResult(run_dir=str(out), epoch=record["epoch"], epochs=config.epochs,
                         trained_epochs=record["epoch"] - start_epoch, stopped_by=stopped or "epochs",
                         best_val_epe=best, val_epe=record.get("val_epe", float("nan")),
                         train_epe=record["train_epe"], elapsed_s=record["elapsed_s"], minutes=config.minutes,
                         weights=str(out / "best.safetensors"))
    emit("end", result.as_dict())
    return result


def _account(figures: StepFigures, sums: dict, emit: Event, world: int, out: Path) -> None:
    """Add a collected step to its epoch's sums and report it; a non-finite loss stops the run before
    anything more is saved (the weights in memory took that step's update; the files did not)."""
    if not math.isfinite(figures.loss):
        raise TrainingError(
            f"loss became {figures.loss} at epoch {figures.epoch}, step {figures.step}; training stopped"
            + (f", last good checkpoint kept in {out / 'last.safetensors'}"
               if (out / "last.safetensors").exists() else " before its first checkpoint, so the run leaves no files"))
    sums["loss"] += figures.loss * figures.images
    sums["epe"] += figures.epe * figures.images
    sums["images"] += figures.images
    sums["data_s"] += figures.data_s
    sums["step_s"] += figures.step_s
    emit("step", {"epoch": figures.epoch, "step": figures.step, "loss": figures.loss, "epe": figures.epe,
                  "images_per_s": figures.images * world / max(figures.step_s, 1e-9), "lr": figures.lr})


def optimize_step(net, model, optimizer, batch, *, clip: float, amp_dtype,
                  loss: str = "multiscale") -> tuple[torch.Tensor, torch.Tensor]:
    """One forward/backward/update with the loss named in LOSSES; returns (loss, EPE) as detached
    device tensors, without waiting for the device (the loop reads them a step later)."""
    img1, img2, flow, valid = batch
    with torch.autocast(img1.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pyramid = net(img1, img2)
    loss, metrics = LOSSES[loss]([p.float() for p in pyramid], flow, valid)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.detach(), metrics["epe"].detach()


def epoch_record(optimizer, epoch: int, sums: dict, clock: float, world: int) -> dict:
    """The epoch's log line, before validation: mean loss and EPE, throughput, data share of the time."""
    images = max(sums["images"], 1)
    return {
        "epoch": epoch + 1,
        "train_loss": sums["loss"] / images,
        "train_epe": sums["epe"] / images,
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": sums["images"] * world / max(sums["step_s"], 1e-9),
        "data_share": sums["data_s"] / max(sums["step_s"], 1e-9),
        "elapsed_s": time.perf_counter() - clock,
    }


def save_epoch(model, optimizer, config: TrainConfig, out: Path, record: dict, extra: dict) -> None:
    """Weights (last, and best when validation improved), training state, then the log line."""
    meta = {"train_config": config.to_json(), "epoch": str(record["epoch"]), "val_epe": f"{record['val_epe']:.4f}"}
    save_weights(out / "last.safetensors", model, metadata=meta)
    if record["val_epe"] <= record["best_val_epe"]:
        save_weights(out / "best.safetensors", model, metadata=meta)
    save_training_state(out / "state.safetensors", model, optimizer, extra)
    append_log(out, record)


def _finished_result(out: Path, config: TrainConfig, resumed: Resumed) -> TrainResult:
    last = last_log_record(out)
    return TrainResult(run_dir=str(out), epoch=resumed.extra["epoch"], epochs=config.epochs, trained_epochs=0,
                       stopped_by=resumed.finished(config), best_val_epe=resumed.extra["best_val_epe"],
                       val_epe=last.get("val_epe", float("nan")), train_epe=last.get("train_epe", float("nan")),
                       elapsed_s=resumed.extra["elapsed_s"], minutes=config.minutes,
                       weights=str(out / "best.safetensors"))
