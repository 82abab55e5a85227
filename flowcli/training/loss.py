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
METRIC_PAIRS = 4  # multiscale_epe's training EPE: pairs of each batch it upsamples and measures


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


def target_pyramid(flow: torch.Tensor, valid: torch.Tensor, sizes: list[tuple[int, int]]):
    """downsample_target at each size (fine to coarse), each level pooled from the one before when
    the sizes divide: one pass over the full-resolution flow instead of one per level, and none over
    the validity when every pixel is valid (generated data, on the CPU; on a GPU, asking would make
    the host wait for the device). Block means of block means are the block means, so the levels
    equal downsample_target's (float rounding aside)."""
    everywhere = valid.device.type == "cpu" and bool(valid.all())
    flow_level = flow if everywhere else flow * valid[:, None]
    valid_level = None if everywhere else valid[:, None].float()  # fraction of valid fine pixels
    levels = []
    for size in sizes:
        (h, w), (fine_h, fine_w) = size, flow_level.shape[-2:]
        if (h, w) == (fine_h, fine_w):
            pass
        elif fine_h % h == 0 and fine_w % w == 0:
            kernel = (fine_h // h, fine_w // w)
            flow_level = F.avg_pool2d(flow_level, kernel)
            valid_level = None if everywhere else F.avg_pool2d(valid_level, kernel)
        else:  # sizes that do not divide: straight from full resolution
            flow_level, coarse_valid = downsample_target(flow, valid, size)
            valid_level = None if everywhere else coarse_valid[:, None].float()
        level_valid = (torch.ones_like(flow_level[:, 0], dtype=torch.bool) if everywhere
                       else valid_level[:, 0] > 0.999)
        levels.append((flow_level, level_valid))
    return levels


def full_size(finest: torch.Tensor, size) -> torch.Tensor:
    """The finest level in float32 at the target's size: flow2 upsampled bilinearly as the model's eval
    output is, or as it is when the convex upsampler already made it full size (no identity resampling
    of the whole batch every step)."""
    if tuple(finest.shape[-2:]) == tuple(size):
        return finest.float()
    return F.interpolate(finest.float(), size=size, mode="bilinear", align_corners=False)


def masked_mean_epe(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    err = torch.linalg.vector_norm(pred.float() - target.float(), dim=1)
    valid = valid.float()
    return (err * valid).sum() / valid.sum().clamp_min(1.0)


def multiscale_epe(pyramid: list[torch.Tensor], flow: torch.Tensor, valid: torch.Tensor):
    """Return (loss, metrics) for a pyramid [flow2 .. flow6] against full-resolution flow.

    metrics['epe'] is the EPE of the finest level upsampled to full resolution over the first
    METRIC_PAIRS pairs of the batch: an honest training-time figure in pixels, at a fraction of the
    cost of upsampling the whole batch (benchmarks/README.md, Training).
    """
    weights = effective_weights(len(pyramid))
    targets = target_pyramid(flow, valid, [tuple(pred.shape[-2:]) for pred in pyramid])
    loss = flow.new_zeros(())
    for w, pred, (target, level_valid) in zip(weights, pyramid, targets):
        loss = loss + w * masked_mean_epe(pred, target, level_valid)
    with torch.no_grad():
        k = METRIC_PAIRS
        full = full_size(pyramid[0][:k], flow.shape[-2:])
        epe = masked_mean_epe(full, flow[:k], valid[:k])
    return loss, {"loss": loss.detach(), "epe": epe}


def full_resolution_epe(pyramid: list[torch.Tensor], flow: torch.Tensor, valid: torch.Tensor):
    """The reference's loss (TrainConfig.loss="epe"): (loss, metrics) where the loss is the EPE of
    flow2 upsampled bilinearly to full resolution, as the model's eval output, over valid pixels:
    the very figure metrics['epe'] of multiscale_epe reports, now trained on."""
    full = full_size(pyramid[0], flow.shape[-2:])
    loss = masked_mean_epe(full, flow, valid)
    return loss, {"loss": loss.detach(), "epe": loss.detach()}


LOSSES = {"multiscale": multiscale_epe, "epe": full_resolution_epe}  # TrainConfig.loss -> function
