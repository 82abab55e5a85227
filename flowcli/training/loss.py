"""FlowNet's multi-scale EPE loss, and the reference's loss: the EPE of the full-resolution output.

FlowNet weights the levels flow6 -> flow2 by 0.32, 0.08, 0.02, 0.01, 0.005 and (as in
FlowNetPytorch) sums the EPE over each level's pixels, so finer levels count more because they have
more pixels. Here those effective weights are normalised to sum to one, so the loss reads as a
weighted mean EPE in pixels (about 45% flow2, 22% flow3, 11% each coarser level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LEVEL_WEIGHTS = (0.005, 0.01, 0.02, 0.08, 0.32)  # flow2, flow3, flow4, flow5, flow6


def effective_weights(num_levels: int = len(LEVEL_WEIGHTS)) -> list[float]:
    """Per-level weight x pixel share relative to flow2 (each level has 1/4 the pixels), normalised."""
    raw = [w / 4**level for level, w in enumerate(LEVEL_WEIGHTS[:num_levels])]
    total = sum(raw)
    return [r / total for r in raw]


def downsample_target(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]):
    """Area-average the target to a level's size; a coarse pixel is valid only if all its parts are."""
    if flow.shape[-2:] == size:
        return flow, valid
    coarse_flow = F.adaptive_avg_pool2d(flow * valid[:, None], size)
    coarse_valid = F.adaptive_avg_pool2d(valid[:, None].float(), size)[:, 0] > 0.999
    return coarse_flow, coarse_valid


def masked_mean_epe(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    err = torch.linalg.vector_norm(pred.float() - target.float(), dim=1)
    valid = valid.float()
    return (err * valid).sum() / valid.sum().clamp_min(1.0)


def multiscale_epe(pyramid: list[torch.Tensor], flow: torch.Tensor, valid: torch.Tensor):
    """Return (loss, metrics) for a pyramid [flow2 .. flow6] against full-resolution flow.

    metrics['epe'] is the EPE of the finest level upsampled to full resolution: a cheap,
    honest training-time figure in pixels.
    """
    weights = effective_weights(len(pyramid))
    loss = flow.new_zeros(())
    for w, pred in zip(weights, pyramid):
        target, level_valid = downsample_target(flow, valid, tuple(pred.shape[-2:]))
        loss = loss + w * masked_mean_epe(pred, target, level_valid)
    with torch.no_grad():
        full = F.interpolate(pyramid[0].float(), size=flow.shape[-2:], mode="bilinear", align_corners=False)
        epe = masked_mean_epe(full, flow, valid)
    return loss, {"loss": loss.detach(), "epe": epe}


def full_resolution_epe(pyramid: list[torch.Tensor], flow: torch.Tensor, valid: torch.Tensor):
    """The reference's loss (TrainConfig.loss="epe"): (loss, metrics) where the loss is the EPE of
    flow2 upsampled bilinearly to full resolution, as the model's eval output, over valid pixels:
    the very figure metrics['epe'] of multiscale_epe reports, now trained on."""
    full = F.interpolate(pyramid[0].float(), size=flow.shape[-2:], mode="bilinear", align_corners=False)
    loss = masked_mean_epe(full, flow, valid)
    return loss, {"loss": loss.detach(), "epe": loss.detach()}


LOSSES = {"multiscale": multiscale_epe, "epe": full_resolution_epe}  # TrainConfig.loss -> function
