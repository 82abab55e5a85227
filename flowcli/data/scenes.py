"""What a generated scene is: its settings (SynthConfig, the motion profiles) and the random draw of
its layers (canonical frames, motions, textures, colours). Every draw is a few small float64 tensors
from one CPU generator, so the same seed gives the same scenes on every device; synth.py renders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .draws import uniform

REF_HEIGHT, REF_WIDTH = 384, 512  # the size every pixel quantity in SynthConfig refers to
TAIL_SIGMAS = 2.5  # a heavy-tailed draw reaches its limit at this many standard deviations
MAX_PERSPECTIVE = 0.5  # foreshortening limit: the homography's divisor stays positive over a layer's box

# Motion profiles. "chairs" (SynthConfig's defaults) matches real Flying Chairs' mean displacement and
# DIS's error on it; "wide" adds what real scenes also show and "chairs" rarely draws: whole-scene
# motion beyond 30 px, objects beyond 80 px, layers turning in depth (benchmarks/README.md, realism.py).
MOTIONS: dict[str, dict] = {
    "chairs": {},
    "wide": {"bg_translate": 45.0, "bg_translate_power": 2.5, "obj_translate": 100.0, "obj_translate_power": 2.5,
             "obj_rotate_deg": 25.0, "obj_scale": (0.85, 1.18), "obj_perspective": 0.3, "bg_perspective": 0.05},
}


@dataclass(frozen=True)
class SynthConfig:
    """What scenes look like. Pixel quantities are for 512x384 and scale with sqrt(image area)."""

    height: int = 384
    width: int = 512
    objects: tuple[int, int] = (8, 16)  # foreground objects per scene at 512x384
    count_follows_area: bool = True  # fewer objects on smaller images (object sizes scale anyway)
    chairs_pixels: bool = False  # True: sizes and motions in 512x384 pixels at any size (a window of a full scene)
    object_radius: tuple[float, float] = (20.0, 80.0)  # px, times a size factor N(0.8, 0.8)
    object_size_clip: tuple[float, float] = (0.2, 2.5)  # bounds of that size factor
    # Motions: the public generator's ranges, those marked * narrowed so that mean displacement and
    # OpenCV DIS's error relative to it match real Flying Chairs pairs (benchmarks/README.md, realism.py).
    bg_translate: float = 30.0  # * px, heavy-tailed: sign(n) |n|^power, n ~ N(0, 1), clipped
    bg_translate_power: float = 4.0
    bg_rotate_deg: float = 10.0
    bg_rotate_prob: float = 0.3
    bg_scale: tuple[float, float] = (0.93, 1.07)
    bg_scale_prob: float = 0.6
    obj_translate: float = 80.0  # *
    obj_translate_power: float = 3.0
    obj_rotate_deg: float = 15.0  # *
    obj_rotate_prob: float = 0.7
    obj_scale: tuple[float, float] = (0.9, 1.1)  # *
    obj_scale_prob: float = 0.7
    # Turning in depth: a homography whose foreshortening across the layer (object radius, or half
    # the image diagonal for the background) is up to this fraction; 0 keeps every motion affine.
    obj_perspective: float = 0.0
    obj_perspective_prob: float = 0.5
    bg_perspective: float = 0.0
    bg_perspective_prob: float = 0.3
    texture_count: int = 48  # procedural textures in the bank
    texture_size: int = 256
    texture_zoom: tuple[float, float] = (0.5, 1.25)  # texels per pixel; above ~1.5 bilinear aliases
    photo_background_prob: float = 0.5  # with textures_dir: how often the background is a photograph
    photo_like_backgrounds: bool = True  # backgrounds only from non-periodic, non-flat textures
    shape_count: int = 256
    shape_size: int = 128

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.width}x{self.height}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"objects must be a range (min, max) with 1 <= min <= max, got {self.objects}")
        for name in ("texture_count", "texture_size", "shape_count", "shape_size"):
            if getattr(self, name) < 4:
                raise ValueError(f"{name} must be at least 4, got {getattr(self, name)}")
        if self.texture_size & (self.texture_size - 1):
            raise ValueError(f"texture_size must be a power of two, got {self.texture_size}")
        if not (0 <= self.obj_perspective <= MAX_PERSPECTIVE and 0 <= self.bg_perspective <= MAX_PERSPECTIVE):
            raise ValueError(f"perspective must be in [0, {MAX_PERSPECTIVE}] (beyond it layers fold over)")

    def with_motion(self, name: str) -> "SynthConfig":
        """This config with the named motion profile's ranges (MOTIONS)."""
        if name not in MOTIONS:
            raise ValueError(f"motion {name!r}: choose {', '.join(MOTIONS)}")
        return replace(self, **MOTIONS[name])

    @property
    def scale(self) -> float:
        """Length scale relative to 512x384: motions and object sizes are multiplied by it.

        With `chairs_pixels` it is 1: a small training image then shows Flying Chairs' own motion
        statistics, as a crop of a full-size scene would, at a fraction of the rendering cost."""
        return 1.0 if self.chairs_pixels else math.sqrt(self.area_ratio)

    @property
    def area_ratio(self) -> float:
        return self.height * self.width / (REF_HEIGHT * REF_WIDTH)

    def object_count_range(self) -> tuple[int, int]:
        """Objects per scene at this size: as many per pixel as at 512x384 (at least 3-5), or,
        without `count_follows_area`, the same count at every size (same coverage, smaller objects)."""
        if not self.count_follows_area:
            return self.objects
        area = self.area_ratio
        lo = max(min(3, self.objects[0]), round(self.objects[0] * area))
        return lo, max(min(lo + 2, self.objects[1]), round(self.objects[1] * area))


def _matrix(lin: Tensor, shift: Tensor) -> Tensor:
    """(..., 2, 2) linear part and (..., 2) translation -> (..., 3, 3) homogeneous affine."""
    m = torch.zeros(*lin.shape[:-2], 3, 3, dtype=lin.dtype)
    m[..., :2, :2] = lin
    m[..., :2, 2] = shift
    m[..., 2, 2] = 1
    return m


def _rot_scale(angle: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """(..., 2, 2) rotation after an axis-aligned scaling."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c * sx, -s * sy], -1), torch.stack([s * sx, c * sy], -1)], -2)


class Draws:
    """Random draws from one CPU generator, in float64 (exact and device-independent)."""

    def __init__(self, g: torch.Generator):
        self.g = g

    def uniform(self, lo: float, hi: float, shape: tuple[int, ...]) -> Tensor:
        return uniform(self.g, lo, hi, shape, dtype=torch.float64)

    def log_uniform(self, lo: float, hi: float, shape: tuple[int, ...]) -> Tensor:
        return torch.exp(self.uniform(math.log(lo), math.log(hi), shape))

    def normal(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.g, dtype=torch.float64)

    def heavy(self, limit: float, power: float, shape: tuple[int, ...]) -> Tensor:
        """Mostly small, occasionally up to +-limit: sign(n) |n|^power, scaled, clipped."""
        n = self.normal(shape)
        v = torch.sign(n) * n.abs() ** power / TAIL_SIGMAS**power
        return limit * v.clamp(-1, 1)

    def sometimes(self, prob: float, values: Tensor, default: float) -> Tensor:
        keep = torch.rand(values.shape, generator=self.g, dtype=torch.float64) < prob
        return torch.where(keep, values, torch.full_like(values, default))


def _motion(d: Draws, centre: Tensor, *, translate: float, power: float, rotate_deg: float,
            rotate_prob: float, scale: tuple[float, float], scale_prob: float) -> Tensor:
    """(..., 3, 3) motion D: rotate and scale about `centre` (..., 2), then translate."""
    shape = centre.shape[:-1]
    angle = d.sometimes(rotate_prob, d.uniform(-1, 1, shape) * math.radians(rotate_deg), 0.0)
    zoom = d.sometimes(scale_prob, d.uniform(scale[0], scale[1], shape), 1.0)
    lin = _rot_scale(angle, zoom, zoom)
    shift = torch.stack([d.heavy(translate, power, shape), d.heavy(translate, power, shape)], -1)
    return _matrix(lin, centre + shift - (lin @ centre[..., None])[..., 0])


def _turn(d: Draws, motion: Tensor, centre: Tensor, reach: Tensor, amount: float, prob: float) -> Tensor:
    """`motion` followed by a homography about where it takes `centre`: the layer foreshortens by up
    to `amount` at `reach` px from there, along a random direction (a plane turning in depth)."""
    shape = centre.shape[:-1]
    strength = d.sometimes(prob, d.uniform(-amount, amount, shape), 0.0) / reach
    direction = d.uniform(0, 2 * math.pi, shape)
    tilt = torch.eye(3, dtype=torch.float64).repeat(*shape, 1, 1)
    tilt[..., 2, 0], tilt[..., 2, 1] = strength * torch.cos(direction), strength * torch.sin(direction)
    landing = (motion[..., :2, :2] @ centre[..., None])[..., 0] + motion[..., :2, 2]
    there = _matrix(torch.eye(2, dtype=torch.float64).expand(*shape, 2, 2), landing)
    return there @ tilt @ torch.linalg.inv(there) @ motion


def inverse_homographies(a: Tensor) -> Tensor:
    """Inverse of (..., 3, 3) homographies; affine ones keep their exact (0, 0, 1) last row, so that
    dividing by it changes nothing."""
    inv = torch.linalg.inv(a)
    affine = (a[..., 2, :2] == 0).all(-1) & (a[..., 2, 2] == 1)
    inv[..., 2, :] = torch.where(affine[..., None], torch.tensor([0.0, 0.0, 1.0], dtype=a.dtype), inv[..., 2, :])
    return inv


@dataclass
class Scenes:
    """Per-layer parameters of n scenes with L = 1 + K layers (layer 0 is the background)."""

    a1: Tensor  # (n, L, 3, 3) canonical -> frame-1 pixels
    motion: Tensor  # (n, L, 3, 3) frame-1 pixels -> frame-2 pixels
    tex: Tensor  # (n, L, 3, 3) canonical -> texels
    tex_index: Tensor  # (n, L)
    mask_index: Tensor  # (n, K)
    active: Tensor  # (n, K) bool
    colour: Tensor  # (n, L, 9): per-channel gain, bias, shading (s0, s1, s2) in texel coordinates


def sample_scenes(cfg: SynthConfig, d: Draws, n: int, n_tex: int, backdrops: Tensor, n_photos: int,
                   mask_radius: Tensor) -> Scenes:
    """Draw n scenes; `backdrops` holds the indices of procedural textures fit for a background,
    photographs (if any) are the last `n_photos` textures; `mask_radius` (M,) is each mask's half
    extent, so radii mean the drawn shape's."""
    s, (h, w) = cfg.scale, (cfg.height, cfg.width)
    k_lo, k_hi = cfg.object_count_range()
    counts = torch.randint(k_lo, k_hi + 1, (n, 1), generator=d.g)
    active = torch.arange(k_hi)[None] < counts
    k, L = k_hi, k_hi + 1
    one = torch.ones((n, 1), dtype=torch.float64)
    # Background: canonical = pixel offset from the image centre; it has no mask, so it is infinite.
    centre_bg = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64).expand(n, 1, 2)
    a1_bg = _matrix(_rot_scale(0 * one, one, one), centre_bg)
    motion_bg = _motion(d, centre_bg, translate=cfg.bg_translate * s, power=cfg.bg_translate_power,
                        rotate_deg=cfg.bg_rotate_deg, rotate_prob=cfg.bg_rotate_prob,
                        scale=cfg.bg_scale, scale_prob=cfg.bg_scale_prob)
    # Objects: placed anywhere in the frame, sized like the public generator's.
    centre = torch.stack([d.uniform(0, w, (n, k)), d.uniform(0, h, (n, k))], -1)
    size = (0.8 + 0.8 * d.normal((n, k))).clamp(*cfg.object_size_clip)
    radius = d.uniform(*cfg.object_radius, (n, k)) * size * s
    aspect = d.log_uniform(0.7, 1.4, (n, k))
    mask_index = torch.randint(0, len(mask_radius), (n, k), generator=d.g)
    stretch = radius / mask_radius[mask_index]
    angle = d.uniform(0, 2 * math.pi, (n, k))
    a1_obj = _matrix(_rot_scale(angle, stretch * aspect, stretch / aspect), centre)
    motion_obj = _motion(d, centre, translate=cfg.obj_translate * s, power=cfg.obj_translate_power,
                         rotate_deg=cfg.obj_rotate_deg, rotate_prob=cfg.obj_rotate_prob,
                         scale=cfg.obj_scale, scale_prob=cfg.obj_scale_prob)
    a1 = torch.cat([a1_bg, a1_obj], 1)
    if cfg.bg_perspective > 0:
        motion_bg = _turn(d, motion_bg, centre_bg, torch.full((n, 1), math.hypot(h, w) / 2, dtype=torch.float64),
                          cfg.bg_perspective, cfg.bg_perspective_prob)
    if cfg.obj_perspective > 0:
        motion_obj = _turn(d, motion_obj, centre, radius, cfg.obj_perspective, cfg.obj_perspective_prob)
    # Texture: texel = offset + zoom * R * (frame-1 pixel offset of the layer), moving with the layer.
    zoom = d.log_uniform(*cfg.texture_zoom, (n, L))
    tex_lin = _rot_scale(d.uniform(0, 2 * math.pi, (n, L)), zoom, zoom) @ a1[..., :2, :2]
    offset = d.uniform(0, 2 * cfg.texture_size, (n, L, 2))
    tex = _matrix(tex_lin, offset)
    tex_index = torch.randint(0, n_tex - n_photos, (n, L), generator=d.g)
    tex_index[:, 0] = backdrops[torch.randint(0, len(backdrops), (n,), generator=d.g)]
    if n_photos:  # photographs sit at the end of the bank
        photo = n_tex - n_photos + torch.randint(0, n_photos, (n,), generator=d.g)
        use = torch.rand(n, generator=d.g) < cfg.photo_background_prob
        tex_index[:, 0] = torch.where(use, photo, tex_index[:, 0])
    # Colour: per-layer gain and bias, and a brightness ramp across the layer (light direction).
    gain = torch.exp(0.25 * d.normal((n, L, 3)))
    bias = 0.05 * d.normal((n, L, 3))
    reach = torch.cat([zoom[:, :1] * math.hypot(h, w) / 2, zoom[:, 1:] * radius], 1)  # texels
    ang, amount = d.uniform(0, 2 * math.pi, (n, L)), d.uniform(0, 0.35, (n, L))
    s1, s2 = amount * torch.cos(ang) / reach, amount * torch.sin(ang) / reach
    s0 = 1 - s1 * offset[..., 0] - s2 * offset[..., 1]
    colour = torch.cat([gain, bias, torch.stack([s0, s1, s2], -1)], -1)
    return Scenes(a1, torch.cat([motion_bg, motion_obj], 1), tex, tex_index, mask_index, active, colour)
