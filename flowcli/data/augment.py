"""Batched flow augmentation in pure torch, on whatever device the batch lives on.

Geometry: each sample gets an affine A1 (scale, rotation, flips, translation) taking image-1
pixel coordinates to the output crop, and A2 = B o A1 for image 2, B a small relative transform.
The flow follows exactly: for an output pixel p', p = A1^-1(p'), f = flow(p) (bilinear) and the
new flow is A2(p + f) - p'. A pixel is valid only if p lies inside the input frame and every
input pixel that contributes to its bilinear sample is valid.

Photometric changes (images only) use the same parameters for both images of a pair, plus an
optional small difference for image 2. Every random number comes from the given generator.
Pixel coordinates are (x right, y down) with pixel centres on integers (align_corners=True).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..errors import DataError
from .draws import uniform

_EPS = 1e-3  # tolerance of the validity tests, in pixels and in bilinear weight


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges: moderate defaults; the comments give the FlowNet paper's where they differ.

    Ranges are (low, high); scale, colour and gamma are drawn log-uniformly, so a range such as
    (0.8, 1.25) is centred on 1. Translations are fractions of the input width, for x and y.
    With `keep_inside`, the translation is drawn among those that keep the whole output crop
    inside image 1 (centred when none does), so image 1 has no empty borders where avoidable.
    """

    crop: tuple[int, int] | None = None  # output (height, width); None keeps the input size
    geometric: bool = True  # False: no resampling at all, only an integer random crop
    translate: float = 0.2  # paper 0.2
    rotate: float = 10.0  # degrees; paper 17
    scale: tuple[float, float] = (0.9, 1.5)  # paper (0.9, 2.0)
    rel_translate: float = 0.02  # image 2 relative to image 1
    rel_rotate: float = 2.0  # degrees
    rel_scale: tuple[float, float] = (0.97, 1.03)
    flip_h: float = 0.5  # probability
    flip_v: float = 0.1
    keep_inside: bool = True
    photometric: bool = True
    brightness: float = 0.1  # sigma of an additive shift; paper 0.2
    contrast: tuple[float, float] = (-0.4, 0.4)  # (img - mean) * (1 + c) + mean; paper (-0.8, 0.4)
    colour: tuple[float, float] = (0.8, 1.25)  # per-channel multiplier; paper (0.5, 2.0)
    gamma: tuple[float, float] = (0.8, 1.25)  # paper (0.7, 1.5)
    noise: float = 0.02  # Gaussian noise sigma drawn from U[0, noise]; paper 0.04
    pair_jitter: float = 0.02  # sigma of image 2's extra brightness and log-colour difference

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple) and field.name != "crop" and not value[0] <= value[1]:
                raise DataError(f"augmentation {field.name} range {value} must be (low, high)")
        if min(self.scale + self.rel_scale + self.colour + self.gamma) <= 0:
            raise DataError("augmentation scale, colour and gamma ranges must be positive")
        if not (0 <= self.flip_h <= 1 and 0 <= self.flip_v <= 1):
            raise DataError(f"flip probabilities must be in [0, 1], got {self.flip_h}, {self.flip_v}")
        if min(self.translate, self.rotate, self.rel_translate, self.rel_rotate, self.brightness,
               self.noise, self.pair_jitter) < 0:
            raise DataError("augmentation magnitudes must not be negative")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise DataError(f"crop must be (height, width) of positive sizes, got {self.crop}")


def augment(
    img1: torch.Tensor,
    img2: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor,
    *,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a batch: images (B, 3, H, W) in [0, 1], flow (B, 2, H, W), valid (B, H, W) bool.

    Random numbers are drawn on the generator's device (use one on the batch's device on a GPU).
    Returns the same four tensors at the crop size (resampled flow is zero where valid is False);
    the inputs are never changed, but with a whole-frame crop the flow and valid returned are the
    caller's own tensors: change them in place and a reused batch changes too.
    """
    height, width = _check_batch(img1, img2, flow, valid)
    given = img1
    if config.crop is not None and (config.crop[0] > height or config.crop[1] > width):
        raise DataError(_too_small(width, height, config.crop))
    if config.geometric:
        img1, img2, flow, valid = _geometric(img1, img2, flow, valid, config, generator)
    elif config.crop is not None:
        img1, img2, flow, valid = random_crop(img1, img2, flow, valid, config.crop, generator=generator)
    if config.photometric:  # into new tensors: the caller's, which a reused batch trains on again, stay
        img1, img2 = _photometric(img1, img2, config, generator)
    elif img1 is given:  # nothing made copies: hand out none of the caller's tensors
        img1, img2, flow, valid = (t.clone() for t in (img1, img2, flow, valid))
    return img1, img2, flow, valid


def random_crop(
    img1: torch.Tensor,
    img2: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor,
    size: tuple[int, int],
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop each sample to size = (height, width): at random, or centred when no generator is given;
    the whole frame is the tensors themselves (the caller must not change them in place)."""
    height, width = _check_batch(img1, img2, flow, valid)
    crop_h, crop_w = size
    if crop_h > height or crop_w > width:
        raise DataError(_too_small(width, height, size))
    batch = img1.shape[0]
    if generator is None:
        tops = torch.full((batch,), (height - crop_h) // 2)
        lefts = torch.full((batch,), (width - crop_w) // 2)
    else:
        tops, lefts = (
            torch.randint(0, room + 1, (batch,), generator=generator, device=generator.device)
            for room in (height - crop_h, width - crop_w)
        )
    if (crop_h, crop_w) == (height, width):  # the whole frame (offsets drawn all the same: same stream)
        return img1, img2, flow, valid
    windows = [(slice(t, t + crop_h), slice(x, x + crop_w))
               for t, x in zip(tops.tolist(), lefts.tolist())]
    return tuple(  # type: ignore[return-value]
        torch.stack([x[i, ..., rows, cols] for i, (rows, cols) in enumerate(windows)])
        for x in (img1, img2, flow, valid)
    )


def _too_small(width: int, height: int, crop: tuple[int, int]) -> str:
    return f"image {height}x{width} (HxW) is smaller than the crop size {crop[0]}x{crop[1]}"


def _check_batch(img1, img2, flow, valid) -> tuple[int, int]:
    """Return (H, W) or raise naming the shapes received."""
    if img1.ndim != 4 or img1.shape[1] != 3 or img1.shape[-2] < 2 or img1.shape[-1] < 2:
        raise ValueError(f"expected a (B, 3, H, W) image batch, got {tuple(img1.shape)}")
    batch, _, height, width = img1.shape
    expected = {"img2": (img2, (batch, 3, height, width)), "flow": (flow, (batch, 2, height, width)),
                "valid": (valid, (batch, height, width))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {tuple(tensor.shape)}")
    if valid.dtype != torch.bool:
        raise ValueError(f"expected a bool valid mask, got {valid.dtype}")
    return height, width


# ---- geometry --------------------------------------------------------------------------------


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B,) radians -> (B, 2, 2) rotation matrices (y down, so positive turns clockwise on screen)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _inverse(m: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of (B, 2, 2) matrices (no solver call, no device sync)."""
    a, b, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    adjugate = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return adjugate / (a * d - b * c)[:, None, None]


def _draw_affines(batch, in_size, out_size, cfg: AugmentConfig, generator, device):
    """Per-sample (M1, t1, M2, t2) with A(p) = M p + t, in pixel coordinates (x, y)."""
    in_w, _ = in_size
    u = uniform(generator, 0.0, 1.0, (batch, 10)).to(device)  # every geometric draw at once

    def span(column: int, low: float, high: float) -> torch.Tensor:
        return low + u[:, column] * (high - low)

    angle1 = torch.deg2rad(span(0, -cfg.rotate, cfg.rotate))
    angle2 = torch.deg2rad(span(1, -cfg.rel_rotate, cfg.rel_rotate))
    scale1 = torch.exp(span(2, *map(math.log, cfg.scale)))
    scale2 = torch.exp(span(3, *map(math.log, cfg.rel_scale)))
    flips = u[:, 4:6] < torch.tensor([cfg.flip_h, cfg.flip_v], device=device)
    shift_u = u[:, 6:8]
    rel_shift = (2 * u[:, 8:10] - 1) * cfg.rel_translate * in_w

    signs = torch.where(flips, -1.0, 1.0)
    m1 = scale1[:, None, None] * _rotation(angle1) @ torch.diag_embed(signs)  # (B, 2, 2)
    out_centre = (torch.tensor(out_size, device=device, dtype=torch.float32) - 1) / 2
    in_centre = (torch.tensor(in_size, device=device, dtype=torch.float32) - 1) / 2
    limit = cfg.translate * in_w
    centre = in_centre + _shift(m1, in_centre, out_centre, shift_u, limit, cfg.keep_inside)
    t1 = out_centre - (m1 @ centre[..., None])[..., 0]
    rel = scale2[:, None, None] * _rotation(angle2)
    rel_t = out_centre - (rel @ out_centre[:, None])[..., 0] + rel_shift
    return m1, t1, rel @ m1, (rel @ t1[..., None])[..., 0] + rel_t


def _shift(m1, in_centre, out_centre, u, limit, keep_inside) -> torch.Tensor:
    """(B, 2) translation of the input centre, drawn in [-limit, limit] from uniforms `u`."""
    if not keep_inside:
        return (2 * u - 1) * limit
    signs = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], device=u.device)
    corners = signs * out_centre  # output corners relative to its centre
    offsets = torch.einsum("bij,kj->bki", _inverse(m1), corners)  # (B, 4, 2) in input pixels
    feasible_lo = -in_centre - offsets.amin(1)
    feasible_hi = in_centre - offsets.amax(1)
    low = torch.clamp(feasible_lo, min=-limit)
    high = torch.clamp(feasible_hi, max=limit)
    nearest = torch.minimum(torch.maximum(torch.zeros_like(u), feasible_lo), feasible_hi)
    fallback = torch.where(feasible_lo <= feasible_hi, nearest, (feasible_lo + feasible_hi) / 2)
    return torch.where(low <= high, low + u * (high - low), fallback)


def _source(m, t, grid) -> torch.Tensor:
    """Input coordinates A^-1(p') of the output pixels `grid` (h, w, 2): (B, h, w, 2)."""
    inverse = _inverse(m)
    return torch.einsum("bij,hwj->bhwi", inverse, grid) - (inverse @ t[..., None])[:, None, None, :, 0]


def _sample(x: torch.Tensor, source: torch.Tensor, in_size) -> torch.Tensor:
    """Bilinear sample of x (B, C, H, W) at pixel coordinates `source` (B, h, w, 2); zeros outside."""
    half = (torch.tensor(in_size, device=source.device, dtype=source.dtype) - 1) / 2
    grid = (source / half - 1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _geometric(img1, img2, flow, valid, cfg: AugmentConfig, generator):
    batch, _, in_h, in_w = img1.shape
    out_h, out_w = cfg.crop or (in_h, in_w)
    device = img1.device
    m1, t1, m2, t2 = _draw_affines(batch, (in_w, in_h), (out_w, out_h), cfg, generator, device)
    ys, xs = torch.meshgrid(
        torch.arange(out_h, device=device), torch.arange(out_w, device=device), indexing="ij"
    )
    grid = torch.stack([xs, ys], -1).float()  # (h, w, 2) output pixel coordinates
    src1, src2 = _source(m1, t1, grid), _source(m2, t2, grid)
    flow = torch.where(valid[:, None], flow, 0.0)  # unknown-flow values must not leak into neighbours

    new1 = _sample(img1, src1, (in_w, in_h))
    new2 = _sample(img2, src2, (in_w, in_h))
    sampled_flow = _sample(flow.float(), src1, (in_w, in_h)).permute(0, 2, 3, 1)  # (B, h, w, 2)
    weight = _sample(valid[:, None].float(), src1, (in_w, in_h))[:, 0]
    limit = torch.tensor([in_w - 1, in_h - 1], device=device, dtype=src1.dtype)
    inside = ((src1 >= -_EPS) & (src1 <= limit + _EPS)).all(-1)
    new_valid = inside & (weight >= 1 - _EPS)
    target = torch.einsum("bij,bhwj->bhwi", m2, src1 + sampled_flow) + t2[:, None, None, :]
    new_flow = torch.where(new_valid[..., None], target - grid, 0.0)
    return new1, new2, new_flow.permute(0, 3, 1, 2).contiguous().to(flow.dtype), new_valid


# ---- photometry ------------------------------------------------------------------------------


NOISE_BANK = 1 << 23  # standard normals drawn once per device; each image reads a random window


@functools.lru_cache(maxsize=None)
def _noise_bank(device: torch.device) -> torch.Tensor:
    """Fresh Gaussian noise for every pixel was the CPU's costliest augmentation step (benchmarks/
    README.md, Decisions, Training); a random window of a fixed bank has the same per-pixel law."""
    return torch.randn(NOISE_BANK, generator=torch.Generator().manual_seed(0x5EED)).to(device)


def _noise_windows(shape: tuple[int, ...], generator, *, gather: bool) -> torch.Tensor | list[torch.Tensor]:
    """Standard normal noise of one sample's shape for each of shape[0] samples, indexable by sample:
    windows of the bank at random offsets (fresh draws for samples larger than the bank). A list of
    views (no copy; the CPU's choice), or with `gather` one (batch, ...) tensor gathered where the
    generator lives (a GPU's choice: reading the offsets on the host would wait for the device)."""
    batch, count = shape[0], math.prod(shape[1:])
    if count > NOISE_BANK:
        return torch.randn(shape, generator=generator, device=generator.device)
    bank = _noise_bank(generator.device)
    starts = torch.randint(0, NOISE_BANK - count + 1, (batch,), generator=generator, device=generator.device)
    if gather:
        return bank.unfold(0, count, 1)[starts].view(shape)
    return [bank[s:s + count].view(shape[1:]) for s in starts.tolist()]


def _photometric(img1, img2, cfg: AugmentConfig, generator):
    """Colour, gamma, brightness, contrast and noise, the same draws for both images of a pair
    (image 2 jittered a little). On the CPU one sample at a time, in place: the chain stays in
    cache instead of streaming the whole batch through memory once per operation."""
    batch = img1.shape[0]

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=generator.device).to(img1.device)

    def log_uniform(bounds, *shape: int) -> torch.Tensor:
        log_low, log_high = math.log(bounds[0]), math.log(bounds[1])
        return torch.exp(uniform(generator, log_low, log_high, shape)).to(img1.device)

    colour = log_uniform(cfg.colour, batch, 3, 1, 1)
    gamma = log_uniform(cfg.gamma, batch, 1, 1, 1)
    brightness = normal(batch, 1, 1, 1) * cfg.brightness
    contrast = 1 + uniform(generator, *cfg.contrast, (batch, 1, 1, 1)).to(img1.device)
    sigma = uniform(generator, 0.0, cfg.noise, (batch, 1, 1, 1)).to(img1.device)
    jitter_brightness = normal(batch, 1, 1, 1) * cfg.pair_jitter
    jitter_colour = torch.exp(normal(batch, 3, 1, 1) * cfg.pair_jitter)
    noise1, noise2 = (_noise_windows(tuple(img.shape), generator, gather=img.device.type != "cpu")
                      for img in (img1, img2))

    def apply(img, colour, brightness, noise):  # the first step writes a new tensor, the rest in place
        step = 1 if img.device.type == "cpu" else batch
        out = torch.empty_like(img)
        for a in range(0, batch, step):
            b = slice(a, a + step)
            x = torch.mul(img[b], colour[b], out=out[b]).clamp_(0, 1).pow_(gamma[b]).add_(brightness[b])
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            grain = noise[a][None] if step == 1 else noise[b]  # off the CPU, noise was gathered: one tensor
            x.sub_(mean).mul_(contrast[b]).add_(mean).addcmul_(sigma[b], grain.to(img.device))
            x.clamp_(0, 1)
        return out

    return (apply(img1, colour, brightness, noise1),
            apply(img2, colour * jitter_colour, brightness + jitter_brightness, noise2))
