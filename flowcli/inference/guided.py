"""Edge-aware smoothing of a flow field, with image 1 as the guide (He et al.'s fast guided filter).

FlowNetS's flow is predicted at 1/4 resolution and upsampled bilinearly, so motion edges are blurred
and misplaced; after `--passes` each pixel has also picked its own candidate, which leaves speckle.
Within every window the filter fits the flow as a linear function of image 1's colours, so it
smooths inside objects and puts the flow's edges where the image has them. The fit is made at 1/4
resolution and its coefficients upsampled. RADIUS and EPS were tuned on generated pairs
(benchmarks/README.md, "The post-network pipeline"). No learned parameters, any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .warp import box_sum

RADIUS = 12  # full-resolution pixels; rounded down to whole coarse cells (window_pixels)
EPS = 1e-3  # regularisation of the linear fit, for colours in [0, 1]
SUBSAMPLE = 4  # the fit is made at this fraction of the resolution


def window_cells(radius: int = RADIUS, subsample: int = SUBSAMPLE) -> int:
    """The side of the fit's window in coarse cells (odd: centred on a cell)."""
    return 2 * max(1, radius // subsample) + 1


def window_pixels(radius: int = RADIUS, subsample: int = SUBSAMPLE) -> int:
    """The side of the fit's window in full-resolution pixels."""
    return subsample * window_cells(radius, subsample)


def guided_filter(guide: Tensor, x: Tensor, *, radius: int = RADIUS, eps: float = EPS,
                  subsample: int = SUBSAMPLE) -> Tensor:
    """(B, 3, H, W) colour guide in [0, 1] and (B, C, H, W) maps -> x smoothed along the guide's edges."""
    if radius < 1 or eps <= 0 or subsample < 1:
        raise ValueError(f"radius and subsample must be >= 1 and eps > 0, got {radius}, {subsample}, {eps}")
    if guide.shape[1] != 3:
        raise ValueError(f"the guide must have 3 colour channels, got {guide.shape[1]}")
    height, width = guide.shape[-2:]
    guide, x = guide.float(), x.float()
    coarse = (math.ceil(height / subsample), math.ceil(width / subsample))
    g, v = F.adaptive_avg_pool2d(guide, coarse), F.adaptive_avg_pool2d(x, coarse)
    window, channels = window_cells(radius, subsample), x.shape[1]
    count = box_sum(torch.ones_like(g[:1, :1]), window)  # pixels inside each window (fewer at borders)
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    means = box_sum(torch.cat([g, v] + [g[:, i:i + 1] * g[:, j:j + 1] for i, j in pairs]
                              + [g[:, i:i + 1] * v for i in range(3)], 1), window) / count
    mean_g, mean_v = means[:, :3], means[:, 3:3 + channels]
    # covariance of the colours (symmetric 3x3, + eps on the diagonal) and of colour with the flow
    var = {(i, j): means[:, 3 + channels + k] - mean_g[:, i] * mean_g[:, j] + (eps if i == j else 0.0)
           for k, (i, j) in enumerate(pairs)}
    cov = [means[:, 9 + channels + i * channels:9 + channels + (i + 1) * channels] - mean_g[:, i:i + 1] * mean_v
           for i in range(3)]
    inverse = _symmetric_inverse(var)
    slopes = [sum(inverse[min(i, j), max(i, j)][:, None] * cov[j] for j in range(3)) for i in range(3)]
    offset = mean_v - sum(slopes[i] * mean_g[:, i:i + 1] for i in range(3))
    averaged = box_sum(torch.cat(slopes + [offset], 1), window) / count
    averaged = F.interpolate(averaged, size=(height, width), mode="bilinear", align_corners=False)
    return sum(averaged[:, i * channels:(i + 1) * channels] * guide[:, i:i + 1] for i in range(3)) \
        + averaged[:, 3 * channels:]


def _symmetric_inverse(m: dict[tuple[int, int], Tensor]) -> dict[tuple[int, int], Tensor]:
    """Per-pixel inverse of symmetric 3x3 matrices given by their upper triangle (adjugate / det)."""
    a, b, c, d, e, f = (m[k] for k in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    adjugate = {(0, 0): d * f - e * e, (0, 1): c * e - b * f, (0, 2): b * e - c * d,
                (1, 1): a * f - c * c, (1, 2): b * c - a * e, (2, 2): a * d - b * b}
    det = a * adjugate[0, 0] + b * adjugate[0, 1] + c * adjugate[0, 2]
    return {k: value / det for k, value in adjugate.items()}
