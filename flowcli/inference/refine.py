"""Refinement of a predicted flow: a few Lucas-Kanade steps on the image pair, no learned parameters.

FlowNetS predicts at 1/4 resolution and is weakest below a pixel; the FlowNet paper refined it
variationally ("+v"). This is a cheaper local variant: each step warps image 2 by the current flow,
solves the 2x2 least-squares system of brightness constancy over a small window around every pixel,
and keeps the update only where it lowers that window's photometric error, so occlusions and motion
boundaries keep the network's flow. With scale=2 a step runs on the pair and flow halved: each
window covers twice the distance at a third of the cost (the schedule: benchmarks/README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .warp import Warper, box_sum, window_error

WINDOW = 7  # pixels per side of the least-squares window (odd)
DAMPING = 1e-3  # added to the window's gradient sums: untextured areas keep the network's flow
MAX_STEP = 1.0  # px per step and component: the linearisation holds for about a pixel


def refine_flow(img1: Tensor, img2: Tensor, flow: Tensor, *, iterations: int = 2, window: int = WINDOW,
                scale: int = 1) -> Tensor:
    """(B, 3, H, W) frames in [0, 1] and a (B, 2, H, W) flow from img1 to img2 -> the refined flow.
    scale=2: the steps run at half resolution, their change upsampled."""
    if iterations < 0 or window < 1 or window % 2 == 0 or scale not in (1, 2):
        raise ValueError(f"iterations must be >= 0, window a positive odd number and scale 1 or 2, "
                         f"got {iterations}, {window}, {scale}")
    if iterations == 0:
        return flow
    img1, img2, flow = img1.float(), img2.float(), flow.float()
    if scale == 2:
        return flow + _change_at_half_resolution(img1, img2, flow, iterations, window)
    warp = Warper(*flow.shape[-2:], flow.device)
    warped = warp(img2, flow)
    for i in range(iterations):
        ix, iy = _gradients(warped)
        it = warped - img1
        sums = box_sum(torch.cat([(a * b).sum(1, keepdim=True) for a, b in
                                  ((ix, ix), (iy, iy), (ix, iy), (ix, it), (iy, it), (it, it))], 1), window)
        sxx, syy, sxy, sxt, syt, error = sums.unbind(1)
        sxx, syy = sxx + DAMPING, syy + DAMPING
        det = sxx * syy - sxy * sxy
        step = torch.stack(((sxy * syt - syy * sxt) / det, (sxy * sxt - sxx * syt) / det), 1)
        candidate = flow + step.clamp(-MAX_STEP, MAX_STEP)
        warped_candidate = warp(img2, candidate)
        error_candidate = window_error(img1, warped_candidate, window)
        better = (error_candidate < error)[:, None]
        flow = torch.where(better, candidate, flow)
        if i + 1 < iterations:  # the last step's warped image is not needed
            warped = torch.where(better, warped_candidate, warped)
    return flow


def _change_at_half_resolution(img1: Tensor, img2: Tensor, flow: Tensor, iterations: int, window: int) -> Tensor:
    """What steps on 2x2-averaged frames and flow change in the flow, upsampled bilinearly.
    Odd sides are padded by one replicated row/column first, so both grids stay aligned. (Bilinear
    downsampling by exactly 2 is the 2x2 mean, and faster than avg_pool2d on CPU.)"""
    height, width = flow.shape[-2:]
    pad = (0, width % 2, 0, height % 2)
    img1, img2, flow = (F.interpolate(F.pad(x, pad, mode="replicate") if any(pad) else x, scale_factor=0.5,
                                      mode="bilinear", align_corners=False) for x in (img1, img2, flow))
    flow = flow / 2
    change = refine_flow(img1, img2, flow, iterations=iterations, window=window) - flow
    change = F.interpolate(change * 2, scale_factor=2, mode="bilinear", align_corners=False)
    return change[..., :height, :width]


def _gradients(img: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences along x and y, edges replicated."""
    x = F.pad(img, (1, 1, 0, 0), mode="replicate")
    y = F.pad(img, (0, 0, 1, 1), mode="replicate")
    return (x[..., 2:] - x[..., :-2]) / 2, (y[..., 2:, :] - y[..., :-2, :]) / 2
