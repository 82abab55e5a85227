"""End-point error exactly as the reference `mean_epe`, plus the usual 1/3/5 px accuracies,
MPI Sintel's EPE by ground-truth speed (s0-10, s10-40, s40+ px) and EPE split by whether a pixel's
true match stays inside image 2 (as Sintel's matched/unmatched, from the flow alone: a pixel moving
out of the frame has nothing in image 2 to match, so no method can measure its motion, only guess it).

Reference: `torch.norm(gt - pred, p=2, dim=1).mean()` over (B, 2, H, W); here the mean runs over
valid pixels only, which equals the reference whenever every pixel is valid.
"""

from __future__ import annotations

import numpy as np
import torch

THRESHOLDS = (1.0, 3.0, 5.0)
SPEED_BANDS = {"s0-10": (0.0, 10.0), "s10-40": (10.0, 40.0), "s40+": (40.0, float("inf"))}
FRAME_PARTS = ("in-frame", "out-of-frame")
FL_PIXELS, FL_SHARE = 3.0, 0.05  # KITTI's Fl: an outlier has EPE > 3 px AND > 5 % of the true motion


def leaves_frame(flow: torch.Tensor) -> torch.Tensor:
    """(B, H, W) True where p + flow(p) falls outside the image (pixel centres 0 .. W-1, 0 .. H-1)."""
    height, width = flow.shape[-2:]
    xs = torch.arange(width, device=flow.device, dtype=torch.float32) + flow[:, 0].float()
    ys = torch.arange(height, device=flow.device, dtype=torch.float32)[:, None] + flow[:, 1].float()
    return (xs < 0) | (xs > width - 1) | (ys < 0) | (ys > height - 1)


def epe_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean error (B, H, W) of (B, 2, H, W) flows."""
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"expected two (B, 2, H, W) flows, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.linalg.vector_norm(target.float() - pred.float(), ord=2, dim=1)


class EpeTally:
    """Accumulates over pairs, pixel-weighted: EPE, 1/3/5 px accuracies, EPE by speed band and by
    frame part (a band or part without pixels reports None). One tally serves `flowcli eval` and
    the benchmarks."""

    def __init__(self):
        self.err_sum, self.valid = 0.0, 0
        self.hits = {t: 0 for t in THRESHOLDS}
        self.subset_sum = {name: 0.0 for name in (*SPEED_BANDS, *FRAME_PARTS)}  # the pixel subsets
        self.subset_valid = {name: 0 for name in self.subset_sum}
        self.outliers = 0  # KITTI's Fl-all: EPE > FL_PIXELS and > FL_SHARE of the true motion

    def add(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Adds one batch (valid=None: every pixel); returns the errors of its valid pixels (1-D)."""
        err = epe_map(pred, target).double()
        speed = torch.linalg.vector_norm(target.float(), dim=1)
        outside = leaves_frame(target)
        if valid is not None:
            err, speed, outside = err[valid.bool()], speed[valid.bool()], outside[valid.bool()]
        err, speed, outside = err.flatten(), speed.flatten(), outside.flatten()
        self.err_sum += err.sum().item()
        self.valid += err.numel()
        for t in THRESHOLDS:
            self.hits[t] += int((err < t).sum())
        self.outliers += int((~((err <= FL_PIXELS) | (err <= FL_SHARE * speed))).sum())  # NaN counts as an outlier
        subsets = {name: (speed >= lo) & (speed < hi) for name, (lo, hi) in SPEED_BANDS.items()}
        subsets.update(zip(FRAME_PARTS, (~outside, outside)))
        for name, inside in subsets.items():
            self.subset_sum[name] += err[inside].sum().item()
            self.subset_valid[name] += int(inside.sum())
        return err

    def merge(self, other: "EpeTally") -> None:
        """Adds another tally's pixels (a pair's own tally into the whole set's and its scene's)."""
        self.err_sum += other.err_sum
        self.valid += other.valid
        self.outliers += other.outliers
        for t in THRESHOLDS:
            self.hits[t] += other.hits[t]
        for name in self.subset_sum:
            self.subset_sum[name] += other.subset_sum[name]
            self.subset_valid[name] += other.subset_valid[name]

    def result(self) -> dict:
        n = max(self.valid, 1)
        return {"epe": self.err_sum / n if self.valid else float("nan"),
                **{f"{t:g}px": self.hits[t] / n for t in THRESHOLDS},
                **{name: total / self.subset_valid[name] if self.subset_valid[name] else None
                   for name, total in self.subset_sum.items()},
                "out_of_frame_share": self.subset_valid["out-of-frame"] / n,
                "fl_all": self.outliers / n if self.valid else float("nan"),
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


class OcclusionTally:
    """Accumulates over pairs, pixel-weighted, where ground-truth occlusion is known: EPE over the
    non-occluded pixels (`noc`, as KITTI and Sintel report it) and, given a predicted mask (the
    forward-backward check), its precision, recall and F1 against the truth (occluded = positive)."""

    def __init__(self):
        self.noc_sum, self.noc, self.pixels, self.truth = 0.0, 0, 0, 0
        self.tp = self.fp = self.fn = 0
        self.checked = False

    def add(self, pred: torch.Tensor, target: torch.Tensor, truth: torch.Tensor,
            valid: torch.Tensor | None = None, predicted: torch.Tensor | None = None) -> None:
        """One batch: flows (B, 2, H, W), masks (B, H, W) bool (True = occluded); valid as EpeTally."""
        keep = torch.ones_like(truth, dtype=torch.bool) if valid is None else valid.bool()
        truth = truth.bool() & keep
        visible = keep & ~truth
        self.noc_sum += epe_map(pred, target).double()[visible].sum().item()
        self.noc += int(visible.sum())
        self.pixels += int(keep.sum())
        self.truth += int(truth.sum())
        if predicted is not None:
            self.checked = True
            predicted = predicted.bool() & keep
            self.tp += int((predicted & truth).sum())
            self.fp += int((predicted & visible).sum())
            self.fn += int((truth & ~predicted).sum())

    def result(self) -> dict:
        """{'epe_noc', 'occluded_share'} and, after a predicted mask, 'precision', 'recall', 'f1',
        'predicted_share' (None where undefined: no positive predicted or true)."""
        out = {"epe_noc": self.noc_sum / self.noc if self.noc else None,
               "occluded_share": self.truth / self.pixels if self.pixels else None}
        if self.checked:
            precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
            recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
            f1 = (2 * precision * recall / (precision + recall)
                  if precision is not None and recall is not None and precision + recall else None)
            out.update(precision=precision, recall=recall, f1=f1,
                       predicted_share=(self.tp + self.fp) / self.pixels if self.pixels else None)
        return out
