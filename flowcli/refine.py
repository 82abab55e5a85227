"""Full-resolution refinement of a predicted flow: a few Lucas-Kanade steps on the image pair.

FlowNetS predicts at 1/4 resolution and is weakest below a pixel (with the shipped weights, half
of the generated test pixels are within 1 px, against three quarters for OpenCV DIS). The FlowNet
paper refined FlowNetS variationally ("+v"); this is a cheaper local variant: each step warps
image 2 by the current flow, solves the 2x2 least-squares system of brightness constancy over a
small window around every pixel, and keeps the update only where it lowers that window's
photometric error, so occlusions and motion boundaries keep the network's flow.
All tensor ops, batched, on any device; no learned parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WINDOW = 7  # pixels per side of the least-squares window (odd)
DAMPING = 1e-3  # added to the window's gradient sums: untextured areas keep the network's flow
MAX_STEP = 1.0  # px per step and component: the linearisation holds for about a pixel


def refine_flow(img1: Tensor, img2: Tensor, flow: Tensor, *, iterations: int = 2, window: int = WINDOW) -> Tensor:
    """(B, 3, H, W) frames in [0, 1] and a (B, 2, H, W) flow from img1 to img2 -> the refined flow."""
    if iterations < 0 or window < 1 or window % 2 == 0:
        raise ValueError(f"iterations must be >= 0 and window a positive odd number, got {iterations}, {window}")
    if iterations == 0:
        return flow
    img1, img2, flow = img1.float(), img2.float(), flow.float()
    height, width = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=flow.device),
                            torch.arange(width, dtype=torch.float32, device=flow.device), indexing="ij")
    sx, sy = 2 / max(width - 1, 1), 2 / max(height - 1, 1)  # pixels -> grid_sample's [-1, 1]

    def warp(field: Tensor) -> Tensor:
        """img2 sampled at p + field(p): image 2 brought back onto image 1's pixels."""
        grid = torch.stack(((xs + field[:, 0]) * sx - 1, (ys + field[:, 1]) * sy - 1), -1)
        return F.grid_sample(img2, grid, mode="bilinear", padding_mode="border", align_corners=True)

    warped = warp(flow)
    for _ in range(iterations):
        ix, iy = _gradients(warped)
        it = warped - img1
        sums = box_sum(torch.cat([(a * b).sum(1, keepdim=True) for a, b in
                                  ((ix, ix), (iy, iy), (ix, iy), (ix, it), (iy, it), (it, it))], 1), window)
        sxx, syy, sxy, sxt, syt, error = sums.unbind(1)
        sxx, syy = sxx + DAMPING, syy + DAMPING
        det = sxx * syy - sxy * sxy
        step = torch.stack(((sxy * syt - syy * sxt) / det, (sxy * sxt - sxx * syt) / det), 1)
        candidate = flow + step.clamp(-MAX_STEP, MAX_STEP)
        warped_candidate = warp(candidate)
        error_candidate = box_sum(((warped_candidate - img1) ** 2).sum(1, keepdim=True), window)[:, 0]
        better = (error_candidate < error)[:, None]
        flow = torch.where(better, candidate, flow)
        warped = torch.where(better, warped_candidate, warped)
    return flow


def _gradients(img: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences along x and y, edges replicated."""
    x = F.pad(img, (1, 1, 0, 0), mode="replicate")
    y = F.pad(img, (0, 0, 1, 1), mode="replicate")
    return (x[..., 2:] - x[..., :-2]) / 2, (y[..., 2:, :] - y[..., :-2, :]) / 2


def box_sum(x: Tensor, window: int) -> Tensor:
    """Sum over a window x window square around every pixel (zeros outside), by running sums:
    3.6x faster than avg_pool2d on CPU for the six maps a step needs. In float32 the running sums
    cost up to ~7e-4 of absolute error on 1080x1920 frames; float64 sums changed no EPE digit on
    the generated test set and made a step ~40 % slower, so they stay float32."""
    r = window // 2
    c = F.pad(x, (0, 0, r + 1, r)).cumsum(-2)
    x = c[..., window:, :] - c[..., :-window, :]
    c = F.pad(x, (r + 1, r)).cumsum(-1)
    return c[..., window:] - c[..., :-window]
