"""End-point error exactly as the reference `mean_epe`, plus the usual 1/3/5 px accuracies and
MPI Sintel's EPE by ground-truth speed (s0-10, s10-40, s40+ px).

Reference: `torch.norm(gt - pred, p=2, dim=1).mean()` over (B, 2, H, W); here the mean runs over
valid pixels only, which equals the reference whenever every pixel is valid.
"""

from __future__ import annotations

import numpy as np
import torch

THRESHOLDS = (1.0, 3.0, 5.0)
SPEED_BANDS = {"s0-10": (0.0, 10.0), "s10-40": (10.0, 40.0), "s40+": (40.0, float("inf"))}


def epe_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean error (B, H, W) of (B, 2, H, W) flows."""
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"expected two (B, 2, H, W) flows, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.linalg.vector_norm(target.float() - pred.float(), ord=2, dim=1)


class EpeTally:
    """Accumulates over pairs, pixel-weighted: EPE, 1/3/5 px accuracies and EPE by speed band
    (a band without pixels reports None). One tally serves `flowcli eval` and the benchmarks."""

    def __init__(self):
        self.err_sum, self.valid = 0.0, 0
        self.hits = {t: 0 for t in THRESHOLDS}
        self.band_sum = {name: 0.0 for name in SPEED_BANDS}
        self.band_valid = {name: 0 for name in SPEED_BANDS}

    def add(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Adds one batch (valid=None: every pixel); returns the errors of its valid pixels (1-D)."""
        err = epe_map(pred, target).double()
        speed = torch.linalg.vector_norm(target.float(), dim=1)
        if valid is not None:
            err, speed = err[valid.bool()], speed[valid.bool()]
        err, speed = err.flatten(), speed.flatten()
        self.err_sum += err.sum().item()
        self.valid += err.numel()
        for t in THRESHOLDS:
            self.hits[t] += int((err < t).sum())
        for name, (lo, hi) in SPEED_BANDS.items():
            inside = (speed >= lo) & (speed < hi)
            self.band_sum[name] += err[inside].sum().item()
            self.band_valid[name] += int(inside.sum())
        return err

    def result(self) -> dict:
        n = max(self.valid, 1)
        return {"epe": self.err_sum / n if self.valid else float("nan"),
                **{f"{t:g}px": self.hits[t] / n for t in THRESHOLDS},
                **{name: self.band_sum[name] / self.band_valid[name] if self.band_valid[name] else None
                   for name in SPEED_BANDS},
                "valid_pixels": self.valid}


def flow_metrics(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """{'epe', '1px', '3px', '5px', 'valid_pixels'} over the valid pixels of a batch (NaN when none)."""
    tally = EpeTally()
    tally.add(pred, target, valid)
    if tally.valid == 0:
        return {"epe": float("nan"), **{f"{t:g}px": float("nan") for t in THRESHOLDS}, "valid_pixels": 0}
    result = tally.result()
    return {key: result[key] for key in ("epe", *(f"{t:g}px" for t in THRESHOLDS), "valid_pixels")}


def flow_metrics_np(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """The same on (H, W, 2) numpy arrays."""
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    mask = None if valid is None else torch.from_numpy(np.asarray(valid, dtype=bool))[None]
    return flow_metrics(to_t(pred), to_t(target), mask)
