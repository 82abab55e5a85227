"""End-point error exactly as the reference `mean_epe`, plus the usual 1/3/5 px accuracies.

Reference: `torch.norm(gt - pred, p=2, dim=1).mean()` over (B, 2, H, W); here the mean runs over
valid pixels only, which equals the reference whenever every pixel is valid.
"""

from __future__ import annotations

import numpy as np
import torch

THRESHOLDS = (1.0, 3.0, 5.0)


def epe_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean error (B, H, W) of (B, 2, H, W) flows."""
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"expected two (B, 2, H, W) flows, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.linalg.vector_norm(target.float() - pred.float(), ord=2, dim=1)


def flow_metrics(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """{'epe', '1px', '3px', '5px', 'valid_pixels'} over the valid pixels of a batch."""
    err = epe_map(pred, target)
    if valid is not None:
        err = err[valid.bool()]
    if err.numel() == 0:
        return {"epe": float("nan"), **{f"{t:g}px": float("nan") for t in THRESHOLDS}, "valid_pixels": 0}
    out = {"epe": err.mean().item()}
    for t in THRESHOLDS:
        out[f"{t:g}px"] = (err < t).float().mean().item()
    out["valid_pixels"] = err.numel()
    return out


def flow_metrics_np(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """The same on (H, W, 2) numpy arrays."""
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    mask = None if valid is None else torch.from_numpy(np.asarray(valid, dtype=bool))[None]
    return flow_metrics(to_t(pred), to_t(target), mask)
