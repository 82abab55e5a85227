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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import load_training_state, read_state_tensors, save_training_state, save_weights, weights_path
from ..data.splits import save_split
from ..device import check_compile_toolchain, resolve_device
from ..errors import TrainingError
from ..metrics import epe_map
from ..model import MIN_SIDE, FlowNetS, upscaled_for_network
from ..results import JsonResult
from .average import PREFIX as AVERAGE_PREFIX, WeightAverage, holding_average
from .config import TrainConfig
from .loss import LOSSES
from .rundir import NewRunFolder, Resumed, append_log, last_log_record, write_run_config
from .schedule import Schedule, budget_s, check_in, lr_at, ranks_stop_together
from .setup import (autocast_dtype, build_model, compile_mode, distributed_context, make_augmenter, make_optimizer,
                    make_source, model_device, read_init, set_train_mode)
from .sources import FolderSource, epoch_seed
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


def validate(model: FlowNetS, source, *, amp_dtype=None) -> float:
    """EPE over the validation set's valid pixels, pixel-weighted as `flowcli eval` reports it, at
    full resolution (eval-mode forward, padding included).

    Leaves every module in the mode it found it in."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    err_sum, pixels = 0.0, 0  # device tensors once added to: read once, at the end
    with torch.inference_mode():
        for img1, img2, flow, valid in source.validation():
            with torch.autocast(img1.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                small = min(img1.shape[-2:]) < MIN_SIDE  # as eval predicts them (a list's pairs vary in size)
                pred = upscaled_for_network(img1, img2, model) if small else model(img1, img2)
            err_sum = err_sum + epe_map(pred.float(), flow)[valid.bool()].double().sum()
            pixels = pixels + valid.sum()
    for module, training in modes:
        module.training = training
    pixels = int(pixels)
    return float(err_sum) / pixels if pixels else float("nan")


def train(
    config: TrainConfig | None = None,
    *,
    output: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device = "auto",
    on_event: Event | None = None,
    strict: bool = False,
    overrides: dict | None = None,
) -> TrainResult:
    """Train FlowNetS into the run folder `output`. Data: a folder, or generated scenes when None.

    A new run refuses a folder that holds another run unless overwrite=True (which replaces that
    run's files), and removes what it wrote if it fails before its first checkpoint.
    resume=True continues the run in `output` from its saved config (config may be None, or change
    only epochs, minutes, num_workers and compile: more epochs or minutes extend the run; see the module
    docstring).
    strict=True refuses a folder with incomplete triplets instead of warning about them.
    overrides ({field: value}, config.preset_overrides) is recorded in config.json beside the config:
    the options that changed the preset.
    """
    emit = on_event or (lambda kind, info: None)
    out = Path(output)
    rank, world = distributed_context()
    device = resolve_device(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)  # pinned buffers and NCCL use the current device, not cuda:0 on every rank
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
    init = read_init(weights_path(config.init), architecture, config.seed) if config.init and not resume else None
    split_file = out / "split.json" if resumed and data_dir is not None else None
    if split_file is not None and not split_file.is_file():
        emit("warning", {"message": f"{split_file} is missing: the split is drawn again, and differs from the "
                         "run's if pairs were added to the folder since"})
        split_file = None
    # bad data fails before the model is built
    source = make_source(config, data_dir, device, rank, world, strict, split_file=split_file)
    if source.incomplete:
        emit("warning", {"message": f"{len(source.incomplete)} incomplete triplet(s) skipped: "
                         + "; ".join(source.incomplete[:5])})
    model = build_model(config, architecture, init, device)
    optimizer = make_optimizer(model, config)
    extra = load_training_state(out / "state.safetensors", model, optimizer) if resumed else {}
    average = WeightAverage(model, config.ema) if config.ema and rank == 0 else None  # only rank 0 saves
    if average is not None and resumed:
        average.load(read_state_tensors(out / "state.safetensors", AVERAGE_PREFIX), extra.get("ema_updates", 0))
    steps_per_epoch = source.steps_per_epoch
    schedule = (resumed.schedule(config, steps_per_epoch) if resumed
                else Schedule(config.epochs * steps_per_epoch, budget_s(config.minutes)))
    try:
        with ranks_stop_together(world, device):  # rank 0 alone writes: the others must not wait on it in vain
            if folder is not None:
                folder.create()
                write_run_config(out, config, data_dir, overrides=overrides or {})
                if isinstance(source, FolderSource):
                    save_split(out / "split.json", source.split, data_dir)
            elif rank == 0 and (config != resumed.config or resumed.moved):
                write_run_config(out, config, data_dir)  # the extended run or its moved data, for its next resume
        return _loop(model, optimizer, source, config, schedule, out, emit, average, rank=rank, world=world, device=device,
                     start_epoch=extra.get("epoch", 0), best=extra.get("best_val_epe", float("inf")),
                     elapsed_before=extra.get("elapsed_s", 0.0))
    except BaseException:
        if folder is not None and not (out / "state.safetensors").exists():
            folder.discard()
        raise


def _loop(model, optimizer, source, config: TrainConfig, schedule: Schedule, out: Path, emit: Event,
          average: WeightAverage | None, *,
          rank: int, world: int, device: torch.device, start_epoch: int, best: float,
          elapsed_before: float) -> TrainResult:
    """Train epochs start_epoch.. until config.epochs or the time budget; checkpoints after each.
    With `average` the run validates and saves the weights' moving average (average.py)."""
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
    agreed_s = elapsed_before  # under DDP the schedule's time is the last check-in's, the same on every rank
    marks = StepClock(device)
    set_train_mode(model, config.freeze_bn or config.freeze_backbone)
    failure = None  # the first step whose loss went non-finite: the run stops at the next check-in
    for epoch in range(start_epoch, config.epochs):
        gen = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch, rank))
        sums = {"loss": 0.0, "epe": 0.0, "images": 0, "data_s": 0.0, "step_s": 0.0}
        batches = source.epoch(epoch)
        spent = cut_short = False
        queued = None  # the step before this one, read once this one is queued (steps.py)
        for step in range(steps_per_epoch):
            started = marks.start(queued.done if queued is not None else None)
            batch = next(batches, None)
            if batch is None:
                break
            if augmenter is not None:
                batch = augmenter(batch, gen)
            img1, img2, flow, valid = batch
            img1 = img1.contiguous(memory_format=torch.channels_last)
            img2 = img2.contiguous(memory_format=torch.channels_last)
            data_ready = marks.mark()
            progress = schedule.progress(epoch * steps_per_epoch + step,
                                         agreed_s if world > 1 else time.perf_counter() - clock)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, progress)
            loss, epe = optimize_step(net, model, optimizer, (img1, img2, flow, valid),
                                      clip=config.clip, amp_dtype=amp_dtype, loss=config.loss)
            if average is not None:
                average.update()
            values = marks.to_host(loss, epe)
            this = QueuedStep(epoch=epoch + 1, step=step + 1, images=img1.shape[0], values=values,
                              started=started, data_ready=data_ready, done=marks.mark(),
                              lr=optimizer.param_groups[0]["lr"])
            if queued is not None:
                failure = failure or _account(collect(queued, marks), sums, emit, world)
            queued = this
            check = check_in(schedule.budget_s, clock, world, device, failed=failure is not None, step=step)
            agreed_s = agreed_s if check.elapsed_s is None else check.elapsed_s
            if check.failed:
                raise _non_finite(failure, epoch, step, out)
            if check.spent:
                spent = True
                cut_short = step + 1 < steps_per_epoch  # the epoch's steps are not all done
                break
        if queued is not None:
            failure = failure or _account(collect(queued, marks), sums, emit, world)
        if check_in(None, clock, world, device, failed=failure is not None).failed:  # before validating or saving
            raise _non_finite(failure, epoch, steps_per_epoch - 1, out)
        record = epoch_record(optimizer, epoch, sums, clock, world)
        if rank == 0:
            with holding_average(average):
                record["val_epe"] = validate(model, source, amp_dtype=amp_dtype if model_device(model).type == "cuda" else None)
        best = record["best_val_epe"] = min(best, record.get("val_epe", best))
        after = check_in(schedule.budget_s, clock, world, device, failed=False)  # validation counts
        last = epoch + 1 == config.epochs
        spent, agreed_s = spent or after.spent, after.elapsed_s
        stopped = "minutes" if cut_short or (spent and not last) else ("epochs" if last else None)
        if rank == 0:
            save_epoch(model, optimizer, config, out, record, {
                "epoch": epoch + 1, "best_val_epe": best, "elapsed_s": agreed_s,
                "stopped": stopped, "ema_updates": average.updates if average is not None else 0,
                "schedule": {"epochs": config.epochs, "minutes": config.minutes, "anchor": list(schedule.anchor)}},
                average)
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


def _account(figures: StepFigures, sums: dict, emit: Event, world: int) -> StepFigures | None:
    """Add a collected step to its epoch's sums and report it; a step whose loss is not finite is
    returned instead, for the loop to stop at its next check-in."""
    if not math.isfinite(figures.loss):
        return figures
    sums["loss"] += figures.loss * figures.images
    sums["epe"] += figures.epe * figures.images
    sums["images"] += figures.images
    sums["data_s"] += figures.data_s
    sums["step_s"] += figures.step_s
    emit("step", {"epoch": figures.epoch, "step": figures.step, "loss": figures.loss, "epe": figures.epe,
                  "images_per_s": figures.images * world / max(figures.step_s, 1e-9), "lr": figures.lr})
    return None


def _non_finite(failure: StepFigures | None, epoch: int, step: int, out: Path) -> TrainingError:
    """The error that stops the run; `failure` is None on a DDP rank whose own losses stayed finite."""
    where = (f"loss became {failure.loss} at epoch {failure.epoch}, step {failure.step}" if failure is not None
             else f"a loss became non-finite on another rank by epoch {epoch + 1}, step {step + 1}")
    return TrainingError(
        f"{where}; training stopped"
        + (f", last good checkpoint kept in {out / 'last.safetensors'}"
           if (out / "last.safetensors").exists() else " before its first checkpoint, so the run leaves no files"))


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


def save_epoch(model, optimizer, config: TrainConfig, out: Path, record: dict, extra: dict,
               average: WeightAverage | None = None) -> None:
    """Weights (last, and best when validation improved; the average when kept), training state
    (the raw weights, and the average), then the log line."""
    meta = {"train_config": config.to_json(), "epoch": str(record["epoch"]), "val_epe": f"{record['val_epe']:.4f}"}
    with holding_average(average):
        save_weights(out / "last.safetensors", model, metadata=meta)
        val, best = record["val_epe"], record["best_val_epe"]
        if val <= best or (math.isnan(val) and not math.isfinite(best)):  # no pixel of known flow yet: the latest
            save_weights(out / "best.safetensors", model, metadata=meta)
    save_training_state(out / "state.safetensors", model, optimizer, extra,
                        more=average.state() if average is not None else None)
    append_log(out, record)


def _finished_result(out: Path, config: TrainConfig, resumed: Resumed) -> TrainResult:
    last = last_log_record(out)
    return TrainResult(run_dir=str(out), epoch=resumed.extra["epoch"], epochs=config.epochs, trained_epochs=0,
                       stopped_by=resumed.finished(config), best_val_epe=resumed.extra["best_val_epe"],
                       val_epe=last.get("val_epe", float("nan")), train_epe=last.get("train_epe", float("nan")),
                       elapsed_s=resumed.extra["elapsed_s"], minutes=config.minutes,
                       weights=str(out / "best.safetensors"))
