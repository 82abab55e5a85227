"""What a run is built from: the process group, the network (seeded, or from --init weights, grown
when narrower), the optimizer, the data source and augmenter, the autocast type and compile mode."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from ..checkpoint import check_architecture, load_state, read_config, read_state
from ..device import cpu_has_bf16
from ..errors import CheckpointError, DataError, TrainingError
from ..model import MASK_PREFIX, FlowNetS, ModelConfig
from ..widen import widen
from .config import TrainConfig, show
from .sources import FolderSource, SynthSource


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The parameters that train (with --freeze-backbone: the upsampler's head); weight decay on conv
    weights only, never on biases or BatchNorm (as FlowNetPytorch); fused
    kernels on CUDA, where the small network's steps are launch-bound."""
    trained = [p for p in model.parameters() if p.requires_grad]  # all but a frozen backbone
    decay = [p for p in trained if p.ndim > 1]
    no_decay = [p for p in trained if p.ndim <= 1]
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


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA, and on CPUs with native bf16 (there it is faster than fp32)."""
    if not config.amp:
        return None
    if device.type == "cuda" or cpu_has_bf16():
        return torch.bfloat16
    return None


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
    narrower by a whole factor, which is grown to it computing the same flow (flowcli.widen), or
    the same one without the convex upsampler (which starts as bilinear: almost the same flow)."""
    held = read_config(path)
    if held.upsampler == "bilinear" and architecture.upsampler == "convex":
        if replace(held, upsampler="convex") != architecture:
            raise CheckpointError(f"{path}: the convex upsampler is added to a file at its own width; "
                                  "grow the width in one run, add the upsampler in the next")
        return read_state(path)  # the head is missing: build_model starts it as bilinear
    if held.width < architecture.width and replace(held, width=architecture.width) == architecture:
        try:
            return widen(read_state(path), held, architecture.width, seed=seed)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
    check_architecture(path, held, architecture,
                       wanted="training asks for {asked} (leave --width out to take the file's)")
    return read_state(path)


def make_source(config: TrainConfig, data_dir: str | None, device: torch.device, rank: int, world: int,
                strict: bool, split_file: Path | None = None):
    """The training data: a folder's pairs (`split_file`: a resumed run's split) or the generator."""
    if data_dir is not None:
        if config.synth_motion != "chairs":
            raise DataError(f"synth_motion={show(config.synth_motion)}: a motion profile is for generated data; "
                            f"{data_dir} has its own motions")
        return FolderSource(Path(data_dir), config, device=device, world_size=world, strict=strict,
                            split_file=split_file)
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
        head = {k: v for k, v in model.state_dict().items() if k.startswith(MASK_PREFIX) and k not in init}
        load_state(model, {**init, **head}, config.init)
    if config.freeze_backbone:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith(MASK_PREFIX))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest conv kernels once
    return model.to(device, memory_format=torch.channels_last)  # channels-last convs are faster
