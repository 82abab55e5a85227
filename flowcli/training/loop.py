"""The training loop: one readable function, reporting through an event callback.

A run folder holds config.json, log.jsonl (one JSON line per epoch), last.safetensors and
best.safetensors (model weights, loadable by every command), state.safetensors (optimizer and
schedule, for --resume) and, for folder data, split.json. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import load_state, load_training_state, read_config, read_state, save_training_state, save_weights
from .config import TrainConfig
from ..device import cpu_has_bf16
from ..errors import CheckpointError, DataError, TrainingError
from ..io import atomic_path
from .loss import multiscale_epe, masked_mean_epe
from ..model import STRIDE, FlowNetS, ModelConfig
from .sources import FolderSource, SynthSource, epoch_seed

Event = Callable[[str, dict], None]


def lr_at(config: TrainConfig, progress: float) -> float:
    """OneCycle-style: linear warm-up to lr, then cosine decay to 1% of it; progress in [0, 1]."""
    if config.schedule == "constant":
        return config.lr
    if progress < config.warmup:
        return config.lr * max(progress / config.warmup, 0.01)
    rest = (progress - config.warmup) / max(1e-9, 1 - config.warmup)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0))))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv weights only, never on biases or BatchNorm (as FlowNetPytorch).

    On CUDA the fused kernels update all parameters in a few launches (the small network's steps
    are launch-bound there: see README's training throughput)."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if all(p.is_cuda for p in model.parameters()) else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, **fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, **fused)
    raise ValueError(f"unknown optimizer {config.optimizer!r} (adam or adamw)")


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
    """Training mode, with BatchNorm layers left in eval mode when freeze_bn (as RAFT fine-tunes).

    Fine-tuning trained weights with small batches otherwise replaces running statistics gathered
    over many large batches by noisier ones: a CPU fine-tune at batch 8 lost validation EPE within
    its first 55 steps at a learning rate near 1e-6."""
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
    """bf16 autocast on CUDA, and on CPUs with native bf16 (AMX: 2.6-3x faster steps, measured)."""
    if not config.amp:
        return None
    if device.type == "cuda" or cpu_has_bf16():
        return torch.bfloat16
    return None


def over_budget(budget_s: float | None, clock: float, world: int, device: torch.device) -> bool:
    """True once the time budget is spent; under DDP every rank agrees (rank clocks differ)."""
    if not budget_s:
        return False
    over = torch.tensor([float(time.perf_counter() - clock > budget_s)], device=device)
    if world > 1:
        torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
    return bool(over.item())


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_config(config: TrainConfig) -> None:
    crop_h, crop_w = config.crop
    if crop_h % STRIDE or crop_w % STRIDE or crop_h < STRIDE or crop_w < STRIDE:
        raise DataError(f"crop {crop_h}x{crop_w}: both sides must be positive multiples of {STRIDE}")
    if config.batch_size < 1 or config.epochs < 1:
        raise DataError("batch size and epochs must be at least 1")


def init_weights(model: FlowNetS, path: Path) -> None:
    """Start from trained weights (fine-tuning); the file must hold this very architecture."""
    file_config = read_config(path)
    if file_config != model.config:
        raise CheckpointError(f"{path}: holds {file_config}, but training asks for {model.config} "
                              "(leave --width out to take the file's)")
    load_state(model, read_state(path), path)


def train(
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    on_event: Event | None = None,
    strict: bool = False,
) -> dict:
    """Train FlowNetS; returns a summary dict. Data: a folder, or generated scenes when None.

    strict=True refuses a folder with incomplete triplets instead of warning about them.
    With resume=True, config and data come from out_dir/config.json and training continues at the
    saved epoch with the saved optimizer state and schedule position.
    """
    emit = on_event or (lambda kind, info: None)
    out = Path(out_dir)
    rank, world = distributed_context()
    device = torch.device(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if resume:
        if not (out / "config.json").is_file():
            raise CheckpointError(f"{out}: no run to resume (config.json is missing)")
        saved = json.loads((out / "config.json").read_text())
        config, data_dir = TrainConfig.from_json(json.dumps(saved["train"])), saved["data_dir"]
    check_config(config)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = FlowNetS(ModelConfig(width=config.width, batch_norm=config.batch_norm))
    if config.init and not resume:
        init_weights(model, Path(config.init))
    model = model.to(device, memory_format=torch.channels_last)  # 1.4-2x faster convs on CPU and GPU
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest conv kernels once
    optimizer = make_optimizer(model, config)
    start_epoch, best, elapsed_before = 0, float("inf"), 0.0
    if resume:
        extra = load_training_state(out / "state.safetensors", model, optimizer)
        start_epoch, best, elapsed_before = extra["epoch"], extra["best_val_epe"], extra["elapsed_s"]
    elif rank == 0:
        with atomic_path(out / "config.json") as tmp:
            tmp.write_text(json.dumps({"train": json.loads(config.to_json()),
                                       "data_dir": str(data_dir) if data_dir else None}, indent=2))

    if data_dir is not None:
        source = FolderSource(Path(data_dir), config, device=device, run_dir=out, rank=rank, world_size=world,
                              strict=strict)
        if source.incomplete:
            emit("warning", {"message": f"{len(source.incomplete)} incomplete triplet(s) skipped: "
                             + "; ".join(source.incomplete[:5])})
    else:
        source = SynthSource(config, device=device, rank=rank)
    augmenter = None
    if config.augment:
        from ..data.augment import AugmentConfig, augment

        # Generated scenes are already random affine layers: resampling them again only blurs.
        geometric = config.geometric if config.geometric is not None else data_dir is not None
        aug_config = AugmentConfig(crop=config.crop, geometric=geometric)
        augmenter = lambda batch, gen: augment(*batch, config=aug_config, generator=gen)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = autocast_dtype(config, device)
    steps_per_epoch = source.steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    budget_s = config.minutes * 60 if config.minutes else None
    emit("start", {"epochs": config.epochs, "steps_per_epoch": steps_per_epoch, "start_epoch": start_epoch,
                   "params": sum(p.numel() for p in model.parameters()), "device": str(device)})
    clock = time.perf_counter() - elapsed_before
    summary: dict = {"run_dir": str(out), "best_val_epe": best}
    set_train_mode(model, config.freeze_bn)
    for epoch in range(start_epoch, config.epochs):
        gen = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch, rank))
        sums = {"loss": 0.0, "epe": 0.0, "images": 0, "data_s": 0.0, "step_s": 0.0}
        batches = source.epoch(epoch)
        for step in range(steps_per_epoch):
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            if augmenter is not None:
                batch = augmenter(batch, gen)
            img1, img2, flow, valid = batch
            img1 = img1.contiguous(memory_format=torch.channels_last)
            img2 = img2.contiguous(memory_format=torch.channels_last)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t1 = time.perf_counter()
            global_step = epoch * steps_per_epoch + step
            progress = global_step / total_steps
            if budget_s:
                progress = max(progress, (time.perf_counter() - clock) / budget_s)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, progress)
            loss_value, epe_value = optimize_step(net, model, optimizer, (img1, img2, flow, valid),
                                                  clip=config.clip, amp_dtype=amp_dtype)
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss became {loss_value} at epoch {epoch + 1}, step {step + 1}; training stopped"
                    + (f", last good checkpoint kept in {out / 'last.safetensors'}"
                       if (out / "last.safetensors").exists() else " before any checkpoint")
                )
            t2 = time.perf_counter()
            n = img1.shape[0]
            sums["loss"] += loss_value * n
            sums["epe"] += epe_value * n
            sums["images"] += n
            sums["data_s"] += t1 - t0
            sums["step_s"] += t2 - t0
            emit("step", {"epoch": epoch + 1, "step": step + 1, "loss": loss_value, "epe": epe_value,
                          "images_per_s": n * world / max(t2 - t0, 1e-9), "lr": optimizer.param_groups[0]["lr"]})
            if over_budget(budget_s, clock, world, device):
                break
        record = epoch_end(model, optimizer, source, config, out, epoch, sums, best, clock, rank, world, amp_dtype)
        best = record["best_val_epe"]
        summary = {"run_dir": str(out), **record}
        emit("epoch", record)
        if over_budget(budget_s, clock, world, device):
            break
    if world > 1:
        torch.distributed.barrier()
    emit("end", summary)
    return summary


def optimize_step(net, model, optimizer, batch, *, clip: float, amp_dtype) -> tuple[float, float]:
    """One forward/backward/update; returns (loss, EPE). A non-finite loss updates nothing."""
    img1, img2, flow, valid = batch
    with torch.autocast(img1.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pyramid = net(img1, img2)
    loss, metrics = multiscale_epe([p.float() for p in pyramid], flow, valid)
    loss_value = loss.item()  # syncs CUDA
    if not math.isfinite(loss_value):
        return loss_value, float("nan")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss_value, metrics["epe"].item()


def epoch_end(model, optimizer, source, config, out, epoch, sums, best, clock, rank, world, amp_dtype) -> dict:
    """Validate, write checkpoints and the log line (rank 0 only; others wait)."""
    images = max(sums["images"], 1)
    record = {
        "epoch": epoch + 1,
        "train_loss": sums["loss"] / images,
        "train_epe": sums["epe"] / images,
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": sums["images"] * world / max(sums["step_s"], 1e-9),
        "data_share": sums["data_s"] / max(sums["step_s"], 1e-9),
        "elapsed_s": time.perf_counter() - clock,
    }
    if rank == 0:
        record["val_epe"] = validate(model, source, amp_dtype=amp_dtype if model_device(model).type == "cuda" else None)
        record["best_val_epe"] = min(best, record["val_epe"])
        meta = {"train_config": config.to_json(), "epoch": str(epoch + 1), "val_epe": f"{record['val_epe']:.4f}"}
        save_weights(out / "last.safetensors", model, metadata=meta)
        if record["val_epe"] <= best:
            save_weights(out / "best.safetensors", model, metadata=meta)
        save_training_state(out / "state.safetensors", model, optimizer,
                   {"epoch": epoch + 1, "best_val_epe": record["best_val_epe"], "elapsed_s": record["elapsed_s"]})
        with atomic_path(out / "log.jsonl") as tmp:
            previous = (out / "log.jsonl").read_text() if (out / "log.jsonl").exists() else ""
            tmp.write_text(previous + json.dumps(record) + "\n")
    else:
        record["best_val_epe"] = best
    if world > 1:
        torch.distributed.barrier()
    return record
