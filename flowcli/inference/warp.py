"""Backward warping and windowed photometric error: how flowcli checks a flow against its pair.

Both post-network steps use them: refine.py (Lucas-Kanade) and the pipeline's extra network passes
(`--passes`) warp image 2 by the current flow and keep a change only where it lowers the
colour error summed over a small window, so a step that makes things worse somewhere is undone there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class Warper:
    """Samples (B, C, H, W) maps at p + flow(p) for one frame size (the pixel grid is built once)."""

    def __init__(self, height: int, width: int, device: torch.device | str):
        self.ys, self.xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                                          torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
        self.sx, self.sy = 2 / max(width - 1, 1), 2 / max(height - 1, 1)  # pixels -> grid_sample's [-1, 1]

    def __call__(self, image: Tensor, flow: Tensor) -> Tensor:
        """float32 image sampled at p + flow(p) (bilinear, borders extended): image 2 brought onto image 1.
        In float32 whatever the inputs: in bf16, positions near x = 512 would be rounded to 4 px."""
        flow = flow.float()
        grid = torch.stack(((self.xs + flow[:, 0]) * self.sx - 1, (self.ys + flow[:, 1]) * self.sy - 1), -1)
        return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def window_error(img1: Tensor, warped: Tensor, window: int) -> Tensor:
    """(B, H, W): squared colour difference between img1 and warped image 2, summed over each window."""
    return box_sum(((warped - img1) ** 2).sum(1, keepdim=True), window)[:, 0]


def box_sum(x: Tensor, window: int) -> Tensor:
    """Sum over a window x window square around every pixel (zeros outside).

    Along x by running sums; along y by adding shifted rows, sums of 1, 2, 4, ... rows built by
    doubling (cumsum along rows is slow on CPU: benchmarks/README.md, "Window sums").
    """
    r, height = window // 2, x.shape[-2]
    rows = {1: F.pad(x, (0, 0, r, r))}  # rows[n][..., i, :] = sum of the n padded rows from i
    while 2 * max(rows) <= window:
        n = max(rows)
        rows[2 * n] = rows[n][..., :-n, :] + rows[n][..., n:, :]
    total, start = None, 0
    for n in sorted(rows, reverse=True):
        if n <= window - start:
            part = rows[n][..., start:start + height, :]
            total = part.clone() if total is None else total.add_(part)
            start += n
    c = F.pad(total, (r + 1, r)).cumsum(-1)
    return c[..., window:] - c[..., :-window]
