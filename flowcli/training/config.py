"""Training configuration and named presets; saved as config.json in every run folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; a run folder's config.json rebuilds it exactly."""

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
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (else fp32)
    augment: bool = True
    geometric: bool | None = None  # resampling augmentation; None: on for folder data, off for generated
    split: str = "auto"  # folder data: auto | official | reference | seeded
    steps_per_epoch: int = 100  # generated data only: batches per epoch
    synth_size: tuple[int, int] = (384, 512)  # generated scenes (H, W) before augmentation
    synth_chairs_pixels: bool = True  # generated scenes keep Flying Chairs' pixel motions at any size
    synth_reuse: int = 1  # each generated batch trains this many times (fresh augmentation)
    val_count: int = 64  # generated data only: size of the fixed validation set
    minutes: float | None = None  # time budget: stop (and finish the schedule) after this long
    num_workers: int = 0
    init: str | None = None  # weights file to start from (fine-tuning); None: random initialisation
    freeze_bn: bool = False  # keep BatchNorm's running statistics fixed (fine-tuning with small batches)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        raw = json.loads(text)
        known = {f.name: f for f in fields(cls)}
        for key in ("crop", "synth_size"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**{k: v for k, v in raw.items() if k in known})

    def with_overrides(self, **changes) -> "TrainConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, TrainConfig] = {
    # About a minute on 2 CPU cores: a narrow network on small generated scenes whose motions
    # shrink with the image (learning is visible within minutes; Chairs-size motions need longer).
    "quick": TrainConfig(epochs=8, batch_size=8, crop=(128, 192), width=0.25, batch_norm=True, lr=1e-3,
                         steps_per_epoch=60, synth_size=(192, 256), synth_chairs_pixels=False,
                         synth_reuse=3, val_count=16),
    # Full 384x512 frames, no augmentation, the reference's own 80/20 split.
    "reference": TrainConfig(epochs=20, batch_size=8, lr=1e-4, optimizer="adam", weight_decay=0.0,
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


def parse_size(text: str) -> tuple[int, int]:
    """'384x512' -> (384, 512): HEIGHTxWIDTH, height first as in (B, C, H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 384x512") from None
    if height < 1 or width < 1:
        raise ValueError(f"size {text!r}: sides must be positive")
    return height, width
