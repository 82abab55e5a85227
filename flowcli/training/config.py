"""Training configuration, named presets, and how a run's config is resolved (preset, overrides,
--init, --resume); saved as config.json in every run folder."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..data.layouts import LAYOUTS
from ..data.layouts.sintel import PASSES as SINTEL_PASSES
from ..data.splits import SCHEMES
from ..errors import CheckpointError, TrainingError

CROP_MULTIPLE = 64  # FlowNetS's stride (model.STRIDE), repeated so that presets load without torch
ARCHS = ("flownets", "reference")  # model.ARCHS, repeated for the same reason
UPSAMPLERS = ("bilinear", "convex")  # model.UPSAMPLERS, repeated for the same reason
LOSSES = ("multiscale", "epe")  # loss.LOSSES' names: FlowNet's weighted levels, or the full-resolution EPE
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("onecycle", "constant")
MOTIONS = ("chairs", "wide", "mixed")  # data.scenes.MOTIONS' profiles, or both in alternate batches
RESUMABLE = ("epochs", "minutes", "num_workers", "compile")  # what a resumed run may change: no past step depends on it


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; a run folder's config.json rebuilds it exactly.

    Invalid values raise TrainingError on construction, naming the field as `name=value`.
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 4e-4
    optimizer: str = "adamw"  # "adam" (the reference) or "adamw"
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # "onecycle" (5% warm-up, cosine decay) or "constant"
    warmup: float = 0.05
    clip: float = 1.0  # gradient-norm clipping; 0 disables
    crop: tuple[int, int] = (320, 448)  # training crop (H, W), multiples of 64
    width: float = 0.5
    batch_norm: bool = False
    arch: str = "flownets"  # "flownets" (the paper's) or "reference" (the baseline's; model.py)
    flow_scale: float = 20.0  # the network predicts flow / flow_scale; the reference predicts pixels (1.0)
    subtract_mean: bool = True  # input normalisation (model.ModelConfig.subtract_mean)
    loss: str = "multiscale"  # "multiscale" (FlowNet's) or "epe" (the reference's: full-resolution EPE)
    upsampler: str = "bilinear"  # flow2 -> full resolution: "bilinear" or "convex" (learned; model.py)
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (else fp32)
    augment: bool = True
    geometric: bool | None = None  # resampling augmentation; None: on for folder data, off for generated
    split: str = "auto"  # folder data: auto | official | reference | seeded
    steps_per_epoch: int = 100  # generated data only: batches per epoch
    synth_size: tuple[int, int] = (384, 512)  # generated scenes (H, W) before augmentation
    synth_chairs_pixels: bool = True  # generated scenes keep Flying Chairs' pixel motions at any size
    synth_reuse: int = 1  # each generated batch trains this many times (fresh augmentation)
    synth_motion: str = "chairs"  # generated training scenes' motion profile (validation: always "chairs")
    val_count: int = 64  # generated data only: size of the fixed validation set
    minutes: float | None = None  # time budget: stop (and finish the schedule) after this long
    num_workers: int = 0
    compile: bool = False  # torch.compile the training step's network and the generator's per-pixel kernels
    init: str | None = None  # weights to start from (fine-tuning): a file, or a shipped network's name; None: random
    freeze_bn: bool = False  # keep BatchNorm's running statistics fixed (fine-tuning with small batches)
    freeze_backbone: bool = False  # train the convex upsampler's head only (the rest fixed, BatchNorm too)
    ema: float = 0.0  # per-step decay of the weights' moving average, validated and saved (average.py); 0: none
    layout: str = "auto"  # folder data: its dataset layout (data/layouts: auto = detected)
    sintel_pass: str = "clean"  # folder data in Sintel's layout: which rendering pass trains

    def __post_init__(self) -> None:
        for key in ("crop", "synth_size"):  # JSON gives lists
            object.__setattr__(self, key, tuple(getattr(self, key)))
        problems = _problems(self)
        if problems:
            name, why = problems[0]
            raise TrainingError(f"{name}={show(getattr(self, name))}: {why}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def with_overrides(self, **changes) -> "TrainConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def model_config(self):
        """The model.ModelConfig this run trains (imported here: presets load without torch)."""
        from ..model import ModelConfig

        return ModelConfig(width=self.width, batch_norm=self.batch_norm, flow_scale=self.flow_scale,
                           arch=self.arch, subtract_mean=self.subtract_mean, upsampler=self.upsampler)


def _problems(c: TrainConfig):
    """(field, why) for each invalid value, in the order a reader checks them."""
    checks = [
        ("epochs", c.epochs >= 1, "at least 1 epoch is needed"),
        ("batch_size", c.batch_size >= 1, "the batch size must be at least 1"),
        ("lr", c.lr > 0, "the learning rate must be positive"),
        ("width", c.width > 0, "the channel multiplier must be positive"),
        ("arch", c.arch in ARCHS, "choose " + " or ".join(ARCHS)),
        ("loss", c.loss in LOSSES, "choose " + " or ".join(LOSSES)),
        ("upsampler", c.upsampler in UPSAMPLERS, "choose " + " or ".join(UPSAMPLERS)),
        ("freeze_backbone", not c.freeze_backbone or c.upsampler == "convex",
         "only the convex upsampler's head would train, and this network has none (upsampler='convex')"),
        ("freeze_backbone", not c.freeze_backbone or c.init is not None,
         "the head would learn to upsample an untrained network's flow: give the weights to start from (init=FILE)"),
        ("flow_scale", c.flow_scale > 0, "the flow scale must be positive"),
        ("crop", min(c.crop) >= CROP_MULTIPLE and not any(side % CROP_MULTIPLE for side in c.crop),
         f"both sides must be positive multiples of {CROP_MULTIPLE}"),
        ("batch_size", not c.batch_norm or c.freeze_bn or c.freeze_backbone
         or c.batch_size * (c.crop[0] // CROP_MULTIPLE) * (c.crop[1] // CROP_MULTIPLE) > 1,
         f"BatchNorm in training needs more than one value per channel, and at crop {show(c.crop)} the "
         "network's coarsest level is 1x1: use a batch of at least 2, a larger crop, or freeze_bn=True"),
        ("steps_per_epoch", c.steps_per_epoch >= 1, "at least 1 step per epoch is needed"),
        ("minutes", c.minutes is None or c.minutes > 0, "the time budget must be positive (leave it out for none)"),
        ("split", c.split in SCHEMES, f"choose {', '.join(SCHEMES)} ('all' would leave no validation part)"),
        ("optimizer", c.optimizer in OPTIMIZERS, "choose " + " or ".join(OPTIMIZERS)),
        ("schedule", c.schedule in SCHEDULES, "choose " + " or ".join(SCHEDULES)),
        ("warmup", 0 <= c.warmup < 1, "the warm-up is a fraction of the run, in [0, 1)"),
        ("weight_decay", c.weight_decay >= 0, "must not be negative"),
        ("clip", c.clip >= 0, "must not be negative (0 disables clipping)"),
        ("ema", 0 <= c.ema < 1, "the moving average's decay per step, in [0, 1) (0: none)"),
        ("synth_size", min(c.synth_size) >= 1, "both sides must be positive"),
        ("synth_reuse", c.synth_reuse >= 1, "each generated batch trains at least once"),
        ("synth_motion", c.synth_motion in MOTIONS, "choose " + ", ".join(MOTIONS)),
        ("val_count", c.val_count >= 1, "the validation set needs at least 1 pair"),
        ("num_workers", c.num_workers >= 0, "must not be negative"),
        ("layout", c.layout in ("auto", *LAYOUTS), f"choose {', '.join(('auto', *LAYOUTS))}"),
        ("sintel_pass", c.sintel_pass in SINTEL_PASSES, "choose " + " or ".join(SINTEL_PASSES)),
    ]
    return [(name, why) for name, ok, why in checks if not ok]


def show(value) -> str:
    """A value as the CLI spells it: sizes as HEIGHTxWIDTH, text quoted."""
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return repr(value) if isinstance(value, str) else str(value)


PRESETS: dict[str, TrainConfig] = {
    # A narrow network on small generated scenes whose motions shrink with the image, so that
    # learning shows within minutes on a CPU.
    "quick": TrainConfig(epochs=8, batch_size=8, crop=(128, 192), width=0.25, batch_norm=True, lr=1e-3,
                         steps_per_epoch=60, synth_size=(192, 256), synth_chairs_pixels=False,
                         synth_reuse=3, val_count=16),
    # The reference's own recipe: its network (no conv6_1, no flow6) predicting pixels, trained
    # on the EPE of its full-resolution output; Adam at a constant 1e-4, full 384x512 frames, no
    # augmentation, its own 80/20 split.
    "reference": TrainConfig(epochs=20, batch_size=8, lr=1e-4, optimizer="adam", weight_decay=0.0,
                             schedule="constant", clip=0.0, width=1.0, augment=False, crop=(384, 512),
                             split="reference", arch="reference", loss="epe", flow_scale=1.0),
    # The paper's network and flowcli's multi-scale loss under the reference's optimiser and data.
    "flownets-adam": TrainConfig(epochs=20, batch_size=8, lr=1e-4, optimizer="adam", weight_decay=0.0,
                                 schedule="constant", clip=0.0, width=1.0, augment=False, crop=(384, 512),
                                 split="reference"),
    # The shipped weights (see weights/README.md): generated scenes in Flying Chairs pixel units,
    # small crops so 2 CPU cores see many images; the schedule is fitted to the time budget.
    "ship": TrainConfig(epochs=10_000, batch_size=8, crop=(192, 256), synth_size=(224, 288), width=0.25,
                        batch_norm=True, steps_per_epoch=100, synth_reuse=3, lr=4e-4, val_count=32,
                        minutes=75.0),
    # A GPU fine-tune of the shipped weights (use with --init): full 384x512 Flying Chairs-size scenes,
    # paper-size crops and bigger batches, which only a GPU generates and trains fast enough.
    "gpu": TrainConfig(epochs=10_000, batch_size=32, crop=(320, 448), synth_size=(384, 512), width=0.25,
                       batch_norm=True, steps_per_epoch=50, synth_reuse=2, lr=2e-4, val_count=64,
                       num_workers=1, minutes=5.5),
}


def resolve_config(
    preset: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    init: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    **overrides,
) -> TrainConfig:
    """The config a run trains with; overrides set to None keep the value they would replace.

    A new run: the preset (default: "quick" for generated data, the plain defaults for a folder),
    then the overrides, then `init`'s architecture (its width unless one is given, its BatchNorm).
    resume=RUN_DIR: that run's saved config, of which only RESUMABLE fields may change.
    """
    if init is not None:
        from ..checkpoint import is_named, other_arch, read_config, weights_path

        # a shipped network is recorded by its name (the same on every machine), a file by its absolute
        # path (never read back as a name: ./accurate is a file)
        init_label = init if is_named(init) else str(Path(init).resolve())
        init = weights_path(init)
    if resume is not None:
        if preset is not None:
            raise TrainingError(f"preset={preset}: a resumed run keeps its saved settings; leave the preset out")
        saved, saved_data = read_run_config(resume)
        config = saved.with_overrides(init=init_label if init is not None else None, **overrides)
        check_resumable(saved, config, Path(resume))
        resumed_data(saved_data, data_dir, Path(resume))
        return config
    if init is not None:
        architecture = read_config(init)
        # the file's upsampler unless one is given: a bilinear file can gain the convex head, not lose it
        overrides = {**overrides, "init": init_label, "upsampler": overrides.get("upsampler") or architecture.upsampler}
    config = base_config(preset, data_dir).with_overrides(**overrides)
    if init is not None:
        # the file's arch unless --arch or a named preset asks for one: weights never change arch
        arch = overrides.get("arch") or (config.arch if preset is not None else architecture.arch)
        if arch != architecture.arch:
            raise CheckpointError(other_arch(init, architecture.arch, arch))
        config = config.with_overrides(width=overrides.get("width") or architecture.width,
                                       batch_norm=architecture.batch_norm, arch=arch,
                                       flow_scale=architecture.flow_scale,
                                       subtract_mean=architecture.subtract_mean)
    return config


def base_config(preset: str | None, data_dir) -> TrainConfig:
    """The preset a new run starts from (default: "quick" for generated data, the plain defaults
    for a folder)."""
    name = preset if preset is not None else ("quick" if data_dir is None else None)
    if name is not None and name not in PRESETS:
        raise TrainingError(f"preset={name}: no such preset (choose {', '.join(PRESETS)})")
    return PRESETS[name] if name else TrainConfig()


def preset_overrides(preset: str | None, data_dir, **overrides) -> dict:
    """The options given that change the preset's value ({field: new value}), for config.json."""
    base = base_config(preset, data_dir)
    return {k: v for k, v in sorted(overrides.items()) if v is not None and v != getattr(base, k)}


def read_run_config(run_dir: str | os.PathLike) -> tuple[TrainConfig, str | None]:
    """(config, data folder or None for generated data) saved in a run folder's config.json."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no run to resume (config.json is missing)")
    try:
        saved = json.loads(path.read_text())
        return TrainConfig.from_json(json.dumps(saved["train"])), saved["data_dir"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a run configuration ({exc})") from None


def check_resumable(saved: TrainConfig, config: TrainConfig, run_dir: Path) -> None:
    """Refuse a resumed config that contradicts the saved one (other than RESUMABLE fields)."""
    for f in fields(TrainConfig):
        new, old = getattr(config, f.name), getattr(saved, f.name)
        if f.name not in RESUMABLE and new != old:
            raise TrainingError(f"{f.name}={show(new)}: the run in {run_dir} was set up with {f.name}={show(old)}; "
                                "a resumed run keeps its settings (only epochs, minutes, workers and compile may change)")


def resumed_data(saved: str | None, data_dir: str | os.PathLike | None, run_dir: Path) -> str | None:
    """The data a resumed run trains on: its own folder, or, once that is gone, `data_dir` (the
    dataset moved; the run's split.json then checks that all its pairs are there)."""
    if data_dir is None:
        if saved is not None and not Path(saved).exists():
            raise TrainingError(f"the run in {run_dir} trains on {saved}, which is gone; if the dataset "
                                "moved, give its new folder to resume the run")
        return saved
    if saved is not None and (not Path(saved).exists() or Path(data_dir).resolve() == Path(saved).resolve()):
        return str(Path(data_dir).resolve())
    raise TrainingError(f"{data_dir}: the run in {run_dir} trains on {saved or 'generated data'}; "
                        "leave the data folder out to resume it")


def parse_size(text: str) -> tuple[int, int]:
    """'384x512' -> (384, 512): HEIGHTxWIDTH, height first as in (B, C, H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 384x512") from None
    if height < 1 or width < 1:
        raise ValueError(f"size {text!r}: sides must be positive")
    return height, width
