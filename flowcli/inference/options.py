"""InferenceOptions: the choices around the network that every inference command shares, with their
defaults in one place. pipeline.build_pipeline turns them into the steps that run. Nothing heavy is
imported here, so the CLI takes its defaults from this module without loading torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import FlowcliError

# Test-time augmentation: the views of the pair the network sees in one batch (0: as it is, -1: mirrored
# left-right, -2: mirrored up-down); their un-mirrored flows are averaged.
TTA_VIEWS = {"none": (0,), "hflip": (0, -1), "hvflip": (0, -1, -2)}
# Who runs the network body; the pipeline around it is flowcli's either way (inference/ortbackend.py).
BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class InferenceOptions:
    """What runs around the network; `flowcli info --pipeline` prints the steps they make, in order."""

    tta: str = "none"  # also predict the mirrored pair(s) and average (TTA_VIEWS)
    passes: int = 1  # network passes; each extra one predicts what is left after warping image 2
    smooth: bool = True  # guided filter along image 1's colour edges (inference/guided.py)
    refine: int = 1  # Lucas-Kanade steps on the pair (inference/refine.py); 0 = none
    backend: str = "torch"  # or "onnxruntime": the network body as an ONNX model (CPU, fp32)

    def __post_init__(self) -> None:
        if self.tta not in TTA_VIEWS:
            raise FlowcliError(f"tta={self.tta!r}: choose one of {', '.join(TTA_VIEWS)}")
        if self.refine < 0:
            raise FlowcliError(f"refine={self.refine}: the number of refinement steps cannot be negative")
        if self.passes < 1:
            raise FlowcliError(f"passes={self.passes}: the network runs at least once")
        if self.backend not in BACKENDS:
            raise FlowcliError(f"backend={self.backend!r}: choose one of {', '.join(BACKENDS)}")

    def as_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        """'tta hflip, passes 2, no smoothing, refine 2': the options that differ from the defaults."""
        default, parts = InferenceOptions(), []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                parts.append(("smoothing" if value else "no smoothing") if f.name == "smooth" else f"{f.name} {value}")
        return ", ".join(parts)
