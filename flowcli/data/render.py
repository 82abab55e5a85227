"""The scene generator's per-pixel kernels: which layer covers a pixel, its colour and its flow.

Each takes one chunk of pixels and the per-layer tables gathered by pixel, so the same functions run
eagerly (one pass over memory per operation) or fused by torch.compile into one loop per kernel
(`kernels(compiled=True)`; on a CPU that renders ~2x faster and needs a C++ compiler: benchmarks/README.md,
"Generator").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..device import check_compile_toolchain


def mirror(i: Tensor, size: int) -> Tensor:
    """Mirror-repeat an integer texel index (size a power of two): seamless tiling for any texture."""
    r = i & (2 * size - 1)
    return torch.minimum(r, 2 * size - 1 - r)


def mask_keys(ftable: Tensor, itable: Tensor, obj: Tensor, first: Tensor, masks: Tensor, size: int,
              width: int, projective: bool) -> tuple[Tensor, Tensor]:
    """For the pixels of object boxes laid end to end (obj: each pixel's object; first: where each
    object's box starts, relative to the chunk), the pixel's flat index and the object's layer id
    where its mask covers the pixel, else 0. ftable rows: box x, y, 1 / box width, box width, then
    the inverse affine (6) or homography (9) to canonical [-1, 1]; itable: view offset, mask offset,
    layer id."""
    p, info = ftable.index_select(1, obj), itable.index_select(1, obj)
    # Offsets from the chunk start fit float32 exactly (they are within one box).
    local = torch.arange(obj.numel(), device=obj.device, dtype=torch.float32) - first.index_select(0, obj)
    row = torch.floor((local + 0.5) * p[2])
    col = local - row * p[3]
    fx, fy = col + p[0], row + p[1]
    # Canonical [-1, 1] -> mask texel coordinates (pixel centres), bilinear, then threshold.
    u, v = p[4] * fx + p[5] * fy + p[6], p[7] * fx + p[8] * fy + p[9]
    if projective:
        divisor = (p[10] * fx + p[11] * fy + p[12]).clamp_min(1e-6)
        u, v = u / divisor, v / divisor
    mx = (u + 1) * (size / 2) - 0.5
    my = (v + 1) * (size / 2) - 0.5
    x0, y0 = mx.floor(), my.floor()
    ax, ay = mx - x0, my - y0
    x1, y1 = (x0 + 1).clamp(0, size - 1).int(), (y0 + 1).clamp(0, size - 1).int()
    x0, y0 = x0.clamp(0, size - 1).int(), y0.clamp(0, size - 1).int()
    y0, y1 = y0 * size + info[1], y1 * size + info[1]
    top = torch.lerp(masks.index_select(0, y0 + x0), masks.index_select(0, y0 + x1), ax)
    bottom = torch.lerp(masks.index_select(0, y1 + x0), masks.index_select(0, y1 + x1), ax)
    key = torch.where(torch.lerp(top, bottom, ay) > 0.5, info[2], 0)
    pix = (fy * width + fx).int() + info[0]
    return pix.long(), key


def shade(out: Tensor, table: Tensor, rows: Tensor, x: Tensor, y: Tensor, textures: Tensor, size: int,
          projective: bool) -> None:
    """Write into out (3, views, pixels; n in all) the colours of pixels (x, y) whose front layer's
    table row is `rows`: one bilinear, mirror-repeated texture lookup, the layer's colour scale and
    offset, and a linear shading ramp. table rows: texel affine (6), colour scale (3) and offset (3),
    shading (3), texture index, then for homographies the texel map's last row (3)."""
    p = table.index_select(1, rows)
    tx, ty = p[0] * x + p[1] * y + p[2], p[3] * x + p[4] * y + p[5]
    if projective:
        divisor = (p[16] * x + p[17] * y + p[18]).clamp_min(1e-6)
        tx, ty = tx / divisor, ty / divisor
    tx, ty = tx - 0.5, ty - 0.5
    x0, y0 = tx.floor(), ty.floor()
    ax, ay = tx - x0, ty - y0
    x0, y0 = x0.int(), y0.int()
    x0, x1 = mirror(x0, size), mirror(x0 + 1, size)
    base = p[15].int() * (size * size)
    r0, r1 = base + mirror(y0, size) * size, base + mirror(y0 + 1, size) * size
    top = torch.lerp(textures.index_select(1, r0 + x0), textures.index_select(1, r0 + x1), ax)
    bottom = torch.lerp(textures.index_select(1, r1 + x0), textures.index_select(1, r1 + x1), ax)
    c = torch.lerp(top, bottom, ay)  # (3, n)
    ramp = (p[12] + p[13] * tx + p[14] * ty).clamp(0.3, 1.7)
    out.copy_(torch.clamp((c * p[6:9] + p[9:12]) * ramp, 0, 1).view(out.shape))


def flow(out: Tensor, displacement: Tensor, rows: Tensor, x: Tensor, y: Tensor, projective: bool) -> None:
    """Write into out (2, views, pixels; n in all) the exact flow D(p) - p of pixels (x, y) under their
    front layer's motion D, whose rows of D - I are gathered by `rows`: ((D - I) p - (w - 1) p) / w,
    w = D's divisor (1 when affine)."""
    d = displacement.index_select(1, rows)
    fx, fy = d[0] * x + d[1] * y + d[2], d[3] * x + d[4] * y + d[5]
    if projective:
        lift = d[6] * x + d[7] * y + d[8]  # the divisor minus 1
        fx, fy = (fx - lift * x) / (1 + lift), (fy - lift * y) / (1 + lift)
    out[0].copy_(fx.view(out.shape[1:]))
    out[1].copy_(fy.view(out.shape[1:]))


@dataclass(frozen=True)
class Kernels:
    mask_keys: Callable[..., tuple[Tensor, Tensor]]
    shade: Callable[..., None]
    flow: Callable[..., None]


EAGER = Kernels(mask_keys, shade, flow)
_compiled: list[Kernels] = []


def kernels(compiled: bool, device: torch.device) -> Kernels:
    """The eager kernels, or the same ones through torch.compile (each compiles on its first call,
    once per process; dynamic shapes, so chunks of any length share it)."""
    if not compiled:
        return EAGER
    check_compile_toolchain(device)
    if not _compiled:
        _compiled.append(Kernels(*(torch.compile(fn, dynamic=True) for fn in (mask_keys, shade, flow))))
    return _compiled[0]
