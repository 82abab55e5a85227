"""Texture and shape banks for the scene generator, drawn once so that scenes only sample them,
plus the lookup helper the renderer needs (each mask's extent).

The generator bounds training speed, and drawing banks once then sampling them was much faster than
drawing per scene (benchmarks/README.md, "Generator"). Everything here runs once, vectorised, on
the CPU with a seeded generator, so the banks are the same whatever device later renders with them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError, ImageError
from ..io import IMAGE_SUFFIXES, read_image
from .draws import uniform

MAX_PHOTOS = 256  # more photographs than this add little variety and cost memory and start-up time


# ----------------------------------------------------------------------------- random helpers
def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An int in [lo, hi], both included."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _colours(g: torch.Generator, n: int, k: int) -> Tensor:
    """(n, k, 3) random colours; a third of the palettes are near-grey, as photographs often are."""
    base = torch.rand(n, 1, 3, generator=g)
    spread = uniform(g, 0.2, 1.0, (n, 1, 1))
    cols = base + spread * (torch.rand(n, k, 3, generator=g) - 0.5)
    grey = cols.mean(dim=2, keepdim=True)
    sat = torch.where(torch.rand(n, 1, 1, generator=g) < 0.33, 0.25, 1.0)
    return (grey + sat * (cols - grey)).clamp(0, 1)


def _mix(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    return a + (b - a) * t


# ----------------------------------------------------------------------------- textures
def _grid(size: int) -> tuple[Tensor, Tensor]:
    """(y, x) in [0, 1), pixel centres; shapes (1, 1, size, size)."""
    r = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return r.view(1, 1, size, 1), r.view(1, 1, 1, size)


def fractal_noise(g: torch.Generator, n: int, channels: int, size: int, alpha: Tensor) -> Tensor:
    """(n, channels, size, size) 1/f^alpha noise, zero mean, unit std: the spectrum of photographs."""
    white = torch.randn(n, channels, size, size, generator=g)
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    freq = torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / size)
    amp = freq ** (-alpha.view(-1, 1, 1, 1))
    amp[..., 0, 0] = 0.0
    out = torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=(size, size))
    out = out - out.mean(dim=(2, 3), keepdim=True)
    return out / out.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def _noise_textures(g: torch.Generator, n: int, size: int) -> Tensor:
    """Colour 1/f noise through a random palette: clouds, rock, foliage, blurred photographs."""
    grey = fractal_noise(g, n, 1, size, uniform(g, 0.9, 2.2, (n,)))
    colour = fractal_noise(g, n, 3, size, uniform(g, 0.8, 1.8, (n,)))
    pal = _colours(g, n, 3).view(n, 3, 3, 1, 1)
    t = torch.sigmoid(grey * uniform(g, 0.7, 3.0, (n, 1, 1, 1)))
    img = torch.where(t < 0.5, _mix(pal[:, 0], pal[:, 1], 2 * t), _mix(pal[:, 1], pal[:, 2], 2 * t - 1))
    return img + uniform(g, 0.02, 0.15, (n, 1, 1, 1)) * colour


def _voronoi_textures(g: torch.Generator, n: int, size: int) -> Tensor:
    """Cells with edges (tiles, cobbles, cracked paint); periodic distances, one texture at a time."""
    y, x = _grid(size)
    pix = torch.stack(torch.broadcast_tensors(y[0, 0], x[0, 0]), dim=-1).view(-1, 1, 2)
    out = []
    for _ in range(n):
        k = _randint(g, 8, 96)
        pts = torch.rand(1, k, 2, generator=g)
        d = (pix - pts).abs()
        d = torch.minimum(d, 1 - d).square().sum(-1).sqrt()  # (size*size, k)
        near, idx = d.topk(2, dim=1, largest=False)
        cell_cols = _colours(g, 1, k)[0]
        img = cell_cols[idx[:, 0]]  # (size*size, 3)
        cell = (near[:, :1] * math.sqrt(k)).clamp(0, 1)
        img = img * (1 - uniform(g, 0.0, 0.5, (1,)) * cell)
        width = uniform(g, 0.002, 0.02, (1,))
        edge = torch.sigmoid((width - (near[:, 1:] - near[:, :1])) * 600)
        img = _mix(img, torch.rand(1, 3, generator=g) * 0.4, edge)
        out.append(img.T.reshape(3, size, size))
    return torch.stack(out)


def _wave(v: Tensor, kind: Tensor) -> Tensor:
    """Periodic profile of phase v in [0, 1): kind 0 square, 1 triangle, 2 sine."""
    square = (v < 0.5).float()
    tri = 1 - 2 * (v - 0.5).abs()
    sine = 0.5 + 0.5 * torch.cos(2 * math.pi * v)
    return torch.where(kind == 0, square, torch.where(kind == 1, tri, sine))


def _stripe_textures(g: torch.Generator, n: int, size: int) -> Tensor:
    """Stripes, plaids and checkers at integer frequencies (seamless when tiled)."""
    y, x = _grid(size)

    def phase() -> Tensor:
        k = torch.randint(-24, 25, (n, 2, 1, 1), generator=g).float()
        k[:, 0] = torch.where(k[:, 0] == 0, 2.0, k[:, 0])
        v = k[:, :1] * x + k[:, 1:] * y + torch.rand(n, 1, 1, 1, generator=g)
        return v - v.floor()

    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=g)
    a, b = _wave(phase(), kind), _wave(phase(), kind)
    combo = torch.randint(0, 3, (n, 1, 1, 1), generator=g)  # stripes, plaid, checker
    checker = (a - 0.5) * (b - 0.5) * 4 * 0.5 + 0.5
    t = torch.where(combo == 0, a, torch.where(combo == 1, 0.5 * (a + b), checker))
    pal = _colours(g, n, 2).view(n, 2, 3, 1, 1)
    return _mix(pal[:, 0], pal[:, 1], t)


def _tile_textures(g: torch.Generator, n: int, size: int) -> Tensor:
    """Small repeated motifs (dots, squares, diamonds, crosses), some in brick layout."""
    y, x = _grid(size)
    cells = torch.randint(4, 33, (n, 1, 1, 1), generator=g).float()
    row = (y * cells).floor()
    brick = (torch.rand(n, 1, 1, 1, generator=g) < 0.4).float()
    u = x * cells + brick * 0.5 * (row % 2)
    u, v = u - u.floor() - 0.5, y * cells - row - 0.5
    r = uniform(g, 0.15, 0.45, (n, 1, 1, 1))
    motif = torch.randint(0, 4, (n, 1, 1, 1), generator=g)
    disk = u**2 + v**2 < r**2
    square = torch.maximum(u.abs(), v.abs()) < r
    diamond = u.abs() + v.abs() < r * 1.3
    cross = torch.minimum(u.abs(), v.abs()) < r * 0.3
    hit = torch.where(motif == 0, disk, torch.where(motif == 1, square,
                                                    torch.where(motif == 2, diamond, cross)))
    pal = _colours(g, n, 2).view(n, 2, 3, 1, 1)
    return _mix(pal[:, 0], pal[:, 1], hit.float())


def _gradient_textures(g: torch.Generator, n: int, size: int) -> Tensor:
    """Smooth linear or radial colour ramps with a little noise (sky, walls under light)."""
    y, x = _grid(size)
    ang = uniform(g, 0, 2 * math.pi, (n, 1, 1, 1))
    lin = (x - 0.5) * torch.cos(ang) + (y - 0.5) * torch.sin(ang) + 0.5
    c = torch.rand(n, 2, 1, 1, generator=g)
    rad = ((x - c[:, :1]) ** 2 + (y - c[:, 1:]) ** 2).sqrt()
    t = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, lin, rad).clamp(0, 1)
    pal = _colours(g, n, 2).view(n, 2, 3, 1, 1)
    noise = fractal_noise(g, n, 1, size, uniform(g, 1.0, 2.0, (n,)))
    return _mix(pal[:, 0], pal[:, 1], t) + 0.05 * noise


_LEAVES_CHUNK = 64  # shapes tested at once: temporaries of 64 x 256 x 256, 16 MiB as floats


def _dead_leaves_textures(g: torch.Generator, n: int, size: int) -> Tensor:
    """Overlapping flat shapes (disks and boxes) with power-law sizes, small ones on top of large
    ones: sharp edges at every scale, the statistics of photographs of cluttered scenes (the
    dead-leaves model). Distances wrap around, so the texture tiles seamlessly."""
    y, x = _grid(size)
    y, x = y[0, 0], x[0, 0]
    out = []
    for _ in range(n):
        k = _randint(g, 200, 500)
        # Radius density ~ r^-3 between 0.015 and 0.4 of the texture: many small, a few large.
        lo, hi = 0.015, 0.4
        u = torch.rand(k, generator=g)
        radius = ((lo**-2 - u * (lo**-2 - hi**-2)) ** -0.5).sort(descending=True).values
        centre = torch.rand(k, 2, generator=g)
        boxy = torch.rand(k, generator=g) < uniform(g, 0.0, 1.0, (1,))  # some textures mostly boxes (towns)
        aspect = torch.exp(uniform(g, -0.7, 0.7, (k,)))
        cols = _colours(g, 1, k)[0] * uniform(g, 0.4, 1.3, (k, 1))
        # Each pixel takes the colour of the last shape covering it (shape 0's colour if none):
        # shapes are tested in chunks, a few large tensor ops instead of one small op per shape.
        top = torch.zeros(size, size, dtype=torch.int16)
        for start in range(0, k, _LEAVES_CHUNK):
            i = torch.arange(start, min(k, start + _LEAVES_CHUNK))
            dy = (y - centre[i, 0, None, None]).abs()
            dx = (x - centre[i, 1, None, None]).abs()
            dy, dx = torch.minimum(dy, 1 - dy), torch.minimum(dx, 1 - dx)
            rx = (radius[i] * aspect[i]).view(-1, 1, 1)
            ry = (radius[i] / aspect[i]).view(-1, 1, 1)
            box = boxy[i]
            for boxes, part in ((True, box), (False, ~box)):
                if part.any():
                    px, py, prx, pry = dx[part], dy[part], rx[part], ry[part]
                    inside = (px < prx) & (py < pry) if boxes else (px / prx) ** 2 + (py / pry) ** 2 < 1
                    order = i[part].to(torch.int16).view(-1, 1, 1)
                    top = torch.maximum(top, (inside * order).amax(0))
        img = cols[top.long()].permute(2, 0, 1)
        out.append(img.clamp(0, 1))
    return torch.stack(out)

# (maker, share of the bank, fit for a background): periodic and near-flat textures are kept off
# backgrounds, where they made scenes ambiguous (a shifted grid matches itself) and unlike the
# photographs behind Flying Chairs (benchmarks/realism.py: DIS failed on exactly those backgrounds).
_KINDS = ((_noise_textures, 0.25, True), (_dead_leaves_textures, 0.25, True), (_voronoi_textures, 0.1, True),
          (_stripe_textures, 0.1, False), (_tile_textures, 0.15, False), (_gradient_textures, 0.15, False))


def build_texture_bank(*, count: int, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(count, 3, size, size) procedural textures in [0, 1], about half of them mixtures, and a
    (count,) bool: which textures may be a background (photo-like: not periodic, not flat)."""
    g = generator
    parts, backdrop, left = [], [], count
    for i, (kind, share, fit) in enumerate(_KINDS):
        k = left if i == len(_KINDS) - 1 else min(left, max(1, round(count * share)))
        if k > 0:
            parts.append(kind(g, k, size))
            backdrop += [fit] * k
        left -= k
    order = torch.randperm(count, generator=g)
    bank, backdrop = torch.cat(parts)[order], torch.tensor(backdrop)[order]
    # Mixtures: two textures through a soft noise mask, or luminance modulation by noise.
    pick = torch.randperm(count, generator=g)
    other = bank[pick]
    soft = torch.sigmoid(fractal_noise(g, count, 1, size, uniform(g, 1.5, 2.5, (count,)))
                         * uniform(g, 2.0, 10.0, (count, 1, 1, 1)))
    how = torch.rand(count, 1, 1, 1, generator=g)
    mixed = how[:, 0, 0, 0] < 0.3
    bank = torch.where(how < 0.3, _mix(bank, other, soft), bank)
    backdrop = torch.where(mixed, backdrop & backdrop[pick], backdrop)
    lum = fractal_noise(g, count, 1, size, uniform(g, 1.0, 2.0, (count,)))
    bank = torch.where((how >= 0.3) & (how < 0.6), bank * (1 + 0.25 * lum), bank)
    grain = uniform(g, 0.0, 0.03, (count, 1, 1, 1)) * torch.randn(count, 3, size, size, generator=g)
    return (bank + grain).clamp(0, 1), backdrop


def load_photo_textures(folder: Path, *, size: int) -> Tensor:
    """(n, 3, size, size) centre squares of the photographs in `folder`, resized to the bank size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: textures folder not found (or not a folder)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    photos = []
    for path in files[:MAX_PHOTOS]:
        try:
            img = read_image(path)
        except ImageError:
            continue
        t = torch.from_numpy(img).permute(2, 0, 1).float().div(255)[None]
        side = min(t.shape[2:])
        top, left = (t.shape[2] - side) // 2, (t.shape[3] - side) // 2
        t = t[:, :, top:top + side, left:left + side]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=side > size)
        photos.append(t[0].clamp(0, 1))
    if not photos:
        raise DataError(f"{folder}: no readable image (looked for {', '.join(IMAGE_SUFFIXES)})")
    return torch.stack(photos)


# ----------------------------------------------------------------------------- shapes
def _rotate(x: Tensor, y: Tensor, angle: float) -> tuple[Tensor, Tensor]:
    c, s = math.cos(angle), math.sin(angle)
    return c * x + s * y, -s * x + c * y


def _capsule(x: Tensor, y: Tensor, a: tuple[float, float], b: tuple[float, float], half: float) -> Tensor:
    """Points within `half` of the segment a-b: legs, bars, struts."""
    ex, ey = b[0] - a[0], b[1] - a[1]
    t = (((x - a[0]) * ex + (y - a[1]) * ey) / max(ex * ex + ey * ey, 1e-9)).clamp(0, 1)
    return (x - a[0] - t * ex) ** 2 + (y - a[1] - t * ey) ** 2 < half * half


def _box(x: Tensor, y: Tensor, x0: float, x1: float, y0: float, y1: float) -> Tensor:
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _ellipse(x: Tensor, y: Tensor, g: torch.Generator, scale: float = 1.0,
             centre: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    a = float(uniform(g, 0.45, 0.92, (1,))) * scale
    b = a * float(uniform(g, 0.25, 1.0, (1,)))
    u, v = _rotate(x - centre[0], y - centre[1], float(uniform(g, 0, math.pi, (1,))))
    return (u / a) ** 2 + (v / b) ** 2 < 1


def _polygon(x: Tensor, y: Tensor, g: torch.Generator, curved: bool, scale: float = 1.0) -> Tensor:
    """Star-shaped polygon with 3-20 spokes; curved ones bulge some edges in or out."""
    k = _randint(g, 3, 20)
    jitter = 0.2 if k <= 4 else 0.4
    spokes = torch.arange(k) + uniform(g, -jitter, jitter, (k,))
    theta = spokes * (2 * math.pi / k) + float(uniform(g, 0, 2 * math.pi, (1,)))
    theta = torch.sort(torch.remainder(theta, 2 * math.pi)).values
    radius = uniform(g, 0.35, 1.0, (k,)) * 0.65 * scale
    phi = torch.remainder(torch.atan2(y, x), 2 * math.pi)
    i = (torch.searchsorted(theta, phi.contiguous()) - 1) % k
    j = (i + 1) % k
    pi = torch.stack([radius[i] * torch.cos(theta[i]), radius[i] * torch.sin(theta[i])])
    pj = torch.stack([radius[j] * torch.cos(theta[j]), radius[j] * torch.sin(theta[j])])
    ex, ey = pj[0] - pi[0], pj[1] - pi[1]
    dx, dy = torch.cos(phi), torch.sin(phi)
    edge = (pi[0] * ey - pi[1] * ex) / (dx * ey - dy * ex)  # ray-line distance along phi
    if curved:
        span = torch.remainder(theta[j] - theta[i], 2 * math.pi).clamp_min(1e-6)
        s = (torch.remainder(phi - theta[i], 2 * math.pi) / span).clamp(0, 1)
        bulge = uniform(g, -0.45, 0.45, (k,)) * (torch.rand(k, generator=g) < 0.6)
        edge = edge * (1 + bulge[i] * torch.sin(math.pi * s))
    return x**2 + y**2 < edge**2


def _blob(x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
    """Smooth irregular blob with 1-3 holes."""
    size = x.shape[-1]
    noise = fractal_noise(g, 1, 1, size, torch.tensor([2.8]))[0, 0]
    r2 = x**2 + y**2
    shape = (1 - r2 / 0.6 + 0.35 * noise > 0.3) & (r2 < 0.9)
    for _ in range(_randint(g, 1, 3)):
        c = (uniform(g, -0.35, 0.35, (2,))).tolist()
        shape &= ~_ellipse(x, y, g, scale=float(uniform(g, 0.12, 0.3, (1,))), centre=(c[0], c[1]))
    return shape


def _bars(x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
    """One thin bar, or two crossing/touching ones (X, T, L shapes)."""
    half = float(uniform(g, 0.03, 0.1, (1,)))
    length = float(uniform(g, 0.6, 0.92, (1,)))
    shape = _capsule(x, y, (-length, 0.0), (length, 0.0), half) if torch.rand(1, generator=g) < 0.5 \
        else _box(x, y, -length, length, -half, half)
    if torch.rand(1, generator=g) < 0.4:
        u, v = _rotate(x, y, float(uniform(g, 0.4, math.pi - 0.4, (1,))))
        off = float(uniform(g, -0.5, 0.5, (1,)))
        shape |= _capsule(u, v, (off, -length * 0.8), (off, length * 0.8), half)
    return shape & (x**2 + y**2 < 0.9)


def _chair(x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
    """Seat and back on 3-4 thin legs, seen from the side or the front (y grows downwards)."""
    if torch.rand(1, generator=g) < 0.5:
        x = -x
    r = lambda lo, hi: float(uniform(g, lo, hi, (1,)))  # noqa: E731
    half_w, seat_top = r(0.3, 0.45), r(-0.1, 0.15)
    seat_bot = seat_top + r(0.05, 0.13)
    leg, foot = r(0.02, 0.06), r(0.75, 0.92)
    back_top = seat_top - r(0.45, min(0.85, 0.9 + seat_top))
    side = bool(torch.rand(1, generator=g) < 0.5)
    shape = _box(x, y, -half_w, half_w, seat_top, seat_bot)
    if side:  # back rises from one end of the seat, possibly tilted
        lean = r(0.0, 0.15)
        root = -half_w + 0.05
        shape |= _capsule(x, y, (root, seat_top), (root - lean, back_top), r(0.04, 0.09))
    else:  # a full-width back, sometimes with a slot
        shape |= _box(x, y, -half_w * r(0.7, 1.0), half_w * r(0.7, 1.0), back_top, seat_top)
        if torch.rand(1, generator=g) < 0.5:
            shape &= ~_box(x, y, -half_w * 0.5, half_w * 0.5, back_top + 0.08, back_top + r(0.15, 0.3))
    splay = r(0.0, 0.12)
    tops = [-half_w + leg, half_w - leg]
    if _randint(g, 3, 4) == 4:
        tops += [-half_w * 0.55, half_w * 0.55]
    else:
        tops += [r(-0.2, 0.2)]
    for i, xt in enumerate(tops):
        out = splay * (1 if xt > 0 else -1)
        bottom = foot if i < 2 else foot - r(0.03, 0.1)  # rear legs end higher: depth cue
        shape |= _capsule(x, y, (xt, seat_bot), (xt + out, bottom), leg)
    if torch.rand(1, generator=g) < 0.4:  # stretcher between the front legs
        yb = r(seat_bot + 0.15, foot - 0.15)
        shape |= _capsule(x, y, (tops[0], yb), (tops[1], yb), leg * 0.7)
    return shape & (x**2 + y**2 < 0.95**2)


def _ring_or_union(x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
    """An elliptic ring, or a union of 2-3 smaller ellipses and polygons."""
    if torch.rand(1, generator=g) < 0.4:
        a, b = float(uniform(g, 0.6, 0.92, (1,))), float(uniform(g, 0.4, 0.92, (1,)))
        u, v = _rotate(x, y, float(uniform(g, 0, math.pi, (1,))))
        q = (u / a) ** 2 + (v / b) ** 2
        return (q < 1) & (q > float(uniform(g, 0.2, 0.6, (1,))))
    shape = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(_randint(g, 2, 3)):
        c = uniform(g, -0.35, 0.35, (2,)).tolist()
        if torch.rand(1, generator=g) < 0.5:
            shape |= _ellipse(x, y, g, scale=0.55, centre=(c[0], c[1]))
        else:
            shape |= _polygon(x - c[0], y - c[1], g, curved=False, scale=0.8)
    return shape & (x**2 + y**2 < 0.9)


_SHAPES = (
    (lambda x, y, g: _polygon(x, y, g, curved=False), 0.24),
    (lambda x, y, g: _polygon(x, y, g, curved=True), 0.12),
    (lambda x, y, g: _ellipse(x, y, g), 0.12),
    (_blob, 0.12),
    (_bars, 0.12),
    (_chair, 0.18),
    (_ring_or_union, 0.10),
)


def _draw_shape(draw, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
    """Redraw until the shape covers at least 1% of the square (a blob can come out empty)."""
    for _ in range(10):
        mask = draw(x, y, g).float()
        if mask.mean() > 0.01:
            break
    return mask


def build_shape_bank(*, count: int, size: int, generator: torch.Generator) -> Tensor:
    """(count, size, size) anti-aliased masks in [0, 1] inside the canonical square [-1, 1]^2.

    Shapes stay within radius 0.95 so that sampling outside the square reads zero.
    """
    g = generator
    hi = 2 * size  # draw at twice the resolution, then average: smooth thresholded contours
    r = (torch.arange(hi, dtype=torch.float32) + 0.5) / hi * 2 - 1
    y, x = r.view(-1, 1).expand(hi, hi), r.view(1, -1).expand(hi, hi)
    weights = torch.tensor([w for _, w in _SHAPES])
    kinds = torch.multinomial(weights, count, replacement=True, generator=g)
    masks = torch.stack([_draw_shape(_SHAPES[int(k)][0], x, y, g) for k in kinds])
    return F.avg_pool2d(masks[:, None], 2)[:, 0]


def mask_boxes(masks: Tensor) -> Tensor:
    """(M, 4) canonical centre (u, v) and half extents of each mask's support, one texel of margin."""
    size = masks.shape[-1]
    coord = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    on = masks > 0
    def span(any_along: Tensor) -> tuple[Tensor, Tensor]:
        lo = torch.where(any_along, coord, torch.inf).amin(-1)
        hi = torch.where(any_along, coord, -torch.inf).amax(-1)
        return lo - 2 / size, hi + 2 / size
    u0, u1 = span(on.any(1))
    v0, v1 = span(on.any(2))
    return torch.stack([(u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) / 2, (v1 - v0) / 2], -1)
