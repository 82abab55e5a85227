"""Flying-Chairs-style training pairs, generated in batches on the CPU or a GPU with the same code.

A scene is a textured background plus several textured foreground objects (polygons, ellipses,
blobs with holes, thin bars, chair-like composites). Each layer lives in a canonical frame with a
texture and a mask drawn once into banks (`textures.py`); frame t maps canonical coordinates to
pixels with an affine A_t, and A_2 = D A_1 where D is the layer's motion. Rendering inverts A_t
per pixel and samples the banks; the front-most layer wins. The flow of image 1 is therefore
analytic and exact: flow(p) = D(p) - p for the layer in front at p, so img2(p + flow(p)) ==
img1(p) wherever p stays visible. D may also be a homography (a layer turning in depth; the
"wide" motion profile), then every mapping divides by its third coordinate.

Speed is the point (the generator bounds training speed): all random draws are a few small
tensors on the CPU (reproducible on every device); the device then runs two vectorised passes over
both frames of the whole batch: masks tested inside each object's bounding box decide the front
layer (a scatter max), then one bilinear texture lookup per pixel colours it. On the CPU the passes
run in cache-sized chunks; on a GPU in a few large launches.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..device import describe, resolve_device, torch_threads
from ..errors import DataError
from ..io import write_flo, write_gray_png, write_image
from ..results import JsonResult
from .draws import uniform
from .occlusion import true_occlusion
from .render import kernels
from .textures import build_shape_bank, build_texture_bank, load_photo_textures, mask_boxes

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


@dataclass
class SceneBatch:
    """One rendered batch; layers are front-most layer ids per pixel (0 = background)."""

    img1: Tensor  # (B, 3, H, W) in [0, 1]
    img2: Tensor  # (B, 3, H, W)
    flow: Tensor  # (B, 2, H, W) px, img2(p + flow(p)) == img1(p) where visible
    layers1: Tensor  # (B, H, W) int32
    layers2: Tensor  # (B, H, W) int32


# ----------------------------------------------------------------------------- scene parameters
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


class _Draw:
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


def _motion(d: _Draw, centre: Tensor, *, translate: float, power: float, rotate_deg: float,
            rotate_prob: float, scale: tuple[float, float], scale_prob: float) -> Tensor:
    """(..., 3, 3) motion D: rotate and scale about `centre` (..., 2), then translate."""
    shape = centre.shape[:-1]
    angle = d.sometimes(rotate_prob, d.uniform(-1, 1, shape) * math.radians(rotate_deg), 0.0)
    zoom = d.sometimes(scale_prob, d.uniform(scale[0], scale[1], shape), 1.0)
    lin = _rot_scale(angle, zoom, zoom)
    shift = torch.stack([d.heavy(translate, power, shape), d.heavy(translate, power, shape)], -1)
    return _matrix(lin, centre + shift - (lin @ centre[..., None])[..., 0])


def _turn(d: _Draw, motion: Tensor, centre: Tensor, reach: Tensor, amount: float, prob: float) -> Tensor:
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


def _inverse(a: Tensor) -> Tensor:
    """Inverse of (..., 3, 3) homographies; affine ones keep their exact (0, 0, 1) last row, so that
    dividing by it changes nothing."""
    inv = torch.linalg.inv(a)
    affine = (a[..., 2, :2] == 0).all(-1) & (a[..., 2, 2] == 1)
    inv[..., 2, :] = torch.where(affine[..., None], torch.tensor([0.0, 0.0, 1.0], dtype=a.dtype), inv[..., 2, :])
    return inv


@dataclass
class _Scenes:
    """Per-layer parameters of n scenes with L = 1 + K layers (layer 0 is the background)."""

    a1: Tensor  # (n, L, 3, 3) canonical -> frame-1 pixels
    motion: Tensor  # (n, L, 3, 3) frame-1 pixels -> frame-2 pixels
    tex: Tensor  # (n, L, 3, 3) canonical -> texels
    tex_index: Tensor  # (n, L)
    mask_index: Tensor  # (n, K)
    active: Tensor  # (n, K) bool
    colour: Tensor  # (n, L, 9): per-channel gain, bias, shading (s0, s1, s2) in texel coordinates


def _sample_scenes(cfg: SynthConfig, d: _Draw, n: int, n_tex: int, backdrops: Tensor, n_photos: int,
                   mask_radius: Tensor) -> _Scenes:
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
    return _Scenes(a1, torch.cat([motion_bg, motion_obj], 1), tex, tex_index, mask_index, active, colour)


# ----------------------------------------------------------------------------- rendering
@functools.lru_cache(maxsize=4)
def _banks(seed: int, texture_count: int, texture_size: int, shape_count: int,
           shape_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """CPU texture bank, which textures may be backgrounds, and shape bank, cached: a second
    generator with the same seed starts at once.

    Built on one thread: thousands of mid-sized ops gain little from more (1.45 s on 2 threads, 2.3 s
    on 1), but when several processes start at once each one's thread pool fights the others'
    (three at once on 2 cores: 25 s each on 2 threads, 4 s on 1; on a 16-core GPU host, minutes)."""
    g = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        textures, backdrop = build_texture_bank(count=texture_count, size=texture_size, generator=g)
        return textures, backdrop, build_shape_bank(count=shape_count, size=shape_size, generator=g)


class SceneGenerator:
    """Draws batches of (img1, img2, flow); reproducible: the same seed gives the same sequence."""

    def __init__(self, config: SynthConfig = SynthConfig(), *, seed: int = 0,
                 device: str | torch.device = "cpu", textures_dir: Path | None = None, compile: bool = False):
        """compile: run the per-pixel kernels through torch.compile (flowcli.data.render): ~2x faster
        on a CPU once compiled; the same scenes up to float rounding (colours ~1e-7 apart, and a pixel
        right at a mask's edge may rarely take the other layer)."""
        self.config = config
        self.device = resolve_device(device)
        textures, backdrop, masks = _banks(seed, config.texture_count, config.texture_size, config.shape_count,
                                 config.shape_size)
        self.n_photos = 0
        if textures_dir is not None:
            photos = load_photo_textures(Path(textures_dir), size=config.texture_size)
            self.n_photos = len(photos)
            textures = torch.cat([textures, photos])
        self.n_textures = len(textures)
        if not (config.photo_like_backgrounds and backdrop.any()):  # tiny banks may hold none
            backdrop = torch.ones_like(backdrop)
        self._backdrops = backdrop.nonzero()[:, 0]
        self._mask_boxes = mask_boxes(masks)
        # Flat banks, channel planes first: every gather and blend runs on contiguous rows.
        self._textures = textures.permute(1, 0, 2, 3).reshape(3, -1).contiguous().to(self.device)
        self._masks = masks.reshape(-1).contiguous().to(self.device)
        self.reseed(seed)
        # CPU: chunks that stay in cache (4x faster element-wise); GPU: few, large launches.
        self._chunk = 1 << 16 if self.device.type == "cpu" else 1 << 23
        self._layers = config.object_count_range()[1] + 1
        self._pixels = self._pixel_blocks()
        self._kernels = kernels(compile, self.device)

    def reseed(self, seed: int) -> None:
        """Restart the sequence of scenes from `seed`, keeping the banks: reproducible epochs."""
        self._draw = _Draw(torch.Generator().manual_seed((seed * 0x9E3779B1 + 0x7F4A7C15) % 2**63))

    def batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """(img1, img2, flow): (n, 3, H, W) images in [0, 1] and (n, 2, H, W) flow in pixels."""
        scene = self.render(n)
        return scene.img1, scene.img2, scene.flow

    def render(self, n: int) -> SceneBatch:
        """Like `batch`, plus the front-most layer id of every pixel in both frames (occlusions)."""
        if n < 1:
            raise ValueError(f"batch size must be at least 1, got {n}")
        cfg = self.config
        sc = _sample_scenes(cfg, self._draw, n, self.n_textures, self._backdrops, self.n_photos,
                            self._mask_boxes[:, 2:].amax(-1))
        # 2n views: frame 1 of every scene, then frame 2; A_2 = D A_1.
        a = torch.cat([sc.a1, sc.motion @ sc.a1])
        inv = _inverse(a)
        projective = bool((sc.motion[..., 2, :2] != 0).any())  # else every divisor is exactly 1: skipped
        ids = self._front_layers(a[:, 1:], inv[:, 1:], sc.active.repeat(2, 1), sc.mask_index.repeat(2, 1),
                                 projective)
        to_texel = sc.tex.repeat(2, 1, 1, 1) @ inv
        table = torch.cat([to_texel[..., :2, :].flatten(-2), sc.colour.repeat(2, 1, 1),
                           sc.tex_index.repeat(2, 1)[..., None].double(), to_texel[..., 2, :]], -1)
        # flow = D(p) - p = ((D - I) p - (w - 1) p) / w with w = D's divisor: exact (D - I) p when affine
        displacement = (sc.motion - torch.eye(3, dtype=sc.motion.dtype)).flatten(-2)
        img, flow = self._shade(ids, self._columns(table), self._columns(displacement), projective)
        h, w = cfg.height, cfg.width
        img = img.view(2, n, 3, h, w)
        flow = flow.view(n, 2, h, w)
        ids = ids.view(2, n, h, w)
        return SceneBatch(img[0], img[1], flow, ids[0], ids[1])

    def _columns(self, t: Tensor) -> Tensor:
        """(views, layers, k) float64 -> (k, views * layers) float32 on the device: contiguous gathers."""
        return t.reshape(-1, t.shape[-1]).T.to(self.device, torch.float32).contiguous()

    def _pixel_blocks(self) -> tuple[Tensor, Tensor, Tensor]:
        """x, y and layer-table offset of the pixels of one block: a chunk of a view, or whole views."""
        h, w = self.config.height, self.config.width
        views = max(1, self._chunk // (h * w))
        y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        offset = torch.arange(views).repeat_interleave(h * w) * self._layers
        x, y = (c.flatten().repeat(views).float().to(self.device) for c in (x, y))
        return x, y, offset.int().to(self.device)

    def _blocks(self, views: int):
        """(start, end, x, y, table offset) over all pixels of `views` views, in chunks."""
        hw = self.config.height * self.config.width
        xs, ys, offset = self._pixels
        if hw >= self._chunk:
            for v in range(views):
                for a in range(0, hw, self._chunk):
                    b = min(hw, a + self._chunk)
                    yield v * hw + a, v * hw + b, xs[a:b], ys[a:b], v * self._layers
        else:
            per = len(xs) // hw
            for v in range(0, views, per):
                m = (min(views, v + per) - v) * hw
                yield v * hw, v * hw + m, xs[:m], ys[:m], offset[:m] + v * self._layers

    def _front_layers(self, a: Tensor, inv: Tensor, active: Tensor, mask_index: Tensor,
                      projective: bool) -> Tensor:
        """(views*H*W,) front-most layer id: mask tests only inside each object's bounding box."""
        cfg, (views, k) = self.config, active.shape
        h, w, size = cfg.height, cfg.width, cfg.shape_size
        # The shape's own box in canonical coordinates, mapped into the view and clipped to it.
        box = self._mask_boxes[mask_index]  # (views, k, 4): centre u, v and half extents
        if projective:  # the box's image is a quadrilateral: bound its four corners
            signs = torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=a.dtype)
            corners = box[..., None, :2] + box[..., None, 2:] * signs  # (views, k, 4, 2)
            mapped = (a[..., None, :, :2] @ corners[..., None])[..., 0] + a[..., None, :, 2]
            mapped = mapped[..., :2] / mapped[..., 2:]
            low, high = mapped.amin(-2), mapped.amax(-2)
        else:
            centre = (a[..., :2, :2] @ box[..., :2, None])[..., 0] + a[..., :2, 2]
            half = (a[..., :2, :2].abs() @ box[..., 2:, None])[..., 0]
            low, high = centre - half, centre + half
        lo = torch.ceil(low).clamp_min(0).long()
        hi = torch.minimum(torch.floor(high).long(), torch.tensor([w - 1, h - 1]))
        ext = (hi - lo + 1).clamp_min(0) * active[..., None]
        counts = (ext[..., 0] * ext[..., 1]).reshape(-1)
        ids = torch.zeros(views * h * w, dtype=torch.int32, device=self.device)
        total = int(counts.sum())
        if total == 0:
            return ids
        # Per object, exact in float32: first pixel x, y, 1 / box width, box width; inverse affine.
        start = (counts.cumsum(0) - counts).to(self.device)  # element where each object starts
        box_w = ext[..., 0].flatten()
        ftable = torch.stack([lo[..., 0].flatten(), lo[..., 1].flatten(), 1 / box_w.clamp_min(1), box_w])
        inv = inv if projective else inv[..., :2, :]  # an affine view's last row is (0, 0, 1): not gathered
        ftable = torch.cat([ftable, inv.reshape(views * k, -1).T], 0).to(self.device, torch.float32)
        itable = torch.stack([torch.arange(views).repeat_interleave(k) * (h * w),
                              mask_index.flatten() * size * size,
                              torch.arange(1, k + 1).repeat(views)]).to(self.device, torch.int32)
        obj_all = torch.repeat_interleave(torch.arange(views * k, device=self.device, dtype=torch.int32),
                                          counts.to(self.device), output_size=total)
        for s, e in self._chunks(total):
            pix, key = self._kernels.mask_keys(ftable, itable, obj_all[s:e], (start - s).float(), self._masks,
                                               size, w, projective)
            ids.scatter_reduce_(0, pix, key, reduce="amax")
        return ids

    def _chunks(self, total: int):
        for start in range(0, total, self._chunk):
            yield start, min(total, start + self._chunk)

    def _shade(self, ids: Tensor, table: Tensor, displacement: Tensor,
               projective: bool) -> tuple[Tensor, Tensor]:
        """Colours (views, 3, H*W) by one bilinear, mirror-repeated texture lookup per pixel, and
        the exact flow (n, 2, H*W) of the frame-1 views: D(p) - p for the front layer's motion D."""
        size = self.config.texture_size
        total = ids.numel()
        n_flow = total // 2
        if not projective:  # the rows that only homographies read are not gathered per pixel
            table, displacement = table[:16], displacement[:6]
        hw = self.config.height * self.config.width
        colour = torch.empty(total // hw, 3, hw, device=self.device)
        flow = torch.empty(n_flow // hw, 2, hw, device=self.device)
        for s, e, x, y, offset in self._blocks(total // hw):
            rows = ids[s:e] + offset
            self._kernels.shade(_planes(colour, s, e), table, rows, x, y, self._textures, size, projective)
            if s < n_flow:
                f = min(e, n_flow) - s
                self._kernels.flow(_planes(flow, s, s + f), displacement, rows[:f], x[:f], y[:f], projective)
        return colour, flow


def _planes(buffer: Tensor, start: int, end: int) -> Tensor:
    """The pixels start:end of a (views, C, H*W) buffer, counted view after view, as a (C, views,
    pixels) view of it: part of one view, or whole views (the blocks `_blocks` makes). Kernels write
    there directly, so the batch needs no copy into its (B, C, H, W) layout."""
    hw = buffer.shape[-1]
    view, first = divmod(start, hw)
    if end - start <= hw - first:
        return buffer[view:view + 1, :, first:first + end - start].transpose(0, 1)
    if first or end % hw:
        raise ValueError(f"pixels {start}:{end} are neither within one view nor whole views of {hw}")
    return buffer[view:end // hw].transpose(0, 1)


# ----------------------------------------------------------------------------- datasets and speed
DATASET_FILES = ("*_img1.ppm", "*_img2.ppm", "*_flow.flo", "*_occ.png")


def _to_uint8(img: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8 on the CPU."""
    return img.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_dataset(out_dir: Path, *, count: int, seed: int = 0, config: SynthConfig = SynthConfig(),
                  textures_dir: Path | None = None, batch_size: int = 16,
                  on_progress: Callable[[int], None] | None = None, overwrite: bool = False,
                  device: str | torch.device = "cpu", compile: bool = False) -> list[str]:
    """Write `count` pairs as Flying Chairs does (<id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo), and
    each pair's ground-truth occlusion as <id>_occ.png (255: hidden in image 2 or leaving the frame;
    flowcli.data.occlusion).

    Ids are 1-based and zero-padded (00001, ...). The same seed, config and batch_size give the same
    files. A folder that already holds a dataset is refused unless `overwrite`, which first removes
    that dataset's files: two datasets are never silently mixed. `on_progress` gets the number of
    pairs written so far after each batch.
    """
    if count < 0 or batch_size < 1:
        raise ValueError(f"need count >= 0 and batch_size >= 1, got {count=}, {batch_size=}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(out_dir.glob("*_flow.flo"))
    if existing and not overwrite:
        raise DataError(f"{out_dir}: already holds a dataset ({len(existing)} *_flow.flo); "
                        "use an empty folder or overwrite=True")
    generator = SceneGenerator(config, seed=seed, device=device, textures_dir=textures_dir, compile=compile)
    if overwrite:
        for pattern in DATASET_FILES:
            for path in out_dir.glob(pattern):
                path.unlink()
    digits, ids = max(5, len(str(count))), []
    while len(ids) < count:
        scene = generator.render(min(batch_size, count - len(ids)))  # what batch() returns, plus the layers
        flows = scene.flow.permute(0, 2, 3, 1).cpu().numpy()
        hidden = true_occlusion(scene.flow, scene.layers1, scene.layers2).cpu().numpy()
        for a, b, f, occ in zip(_to_uint8(scene.img1), _to_uint8(scene.img2), flows, hidden):
            name = f"{len(ids) + 1:0{digits}d}"
            write_image(out_dir / f"{name}_img1.ppm", a)
            write_image(out_dir / f"{name}_img2.ppm", b)
            write_flo(out_dir / f"{name}_flow.flo", f)
            write_gray_png(out_dir / f"{name}_occ.png", occ.astype(np.uint8) * 255)
            ids.append(name)
        if on_progress is not None:
            on_progress(len(ids))
    return ids


@dataclass(frozen=True)
class GeneratorSpeed(JsonResult):
    device: str
    batch_size: int
    height: int
    width: int
    pairs: int
    seconds: float
    pairs_per_s: float
    init_s: float  # building the texture and shape banks, before the first scene
    compiled: bool = False  # the per-pixel kernels through torch.compile (flowcli.data.render)
    warmup_s: float = 0.0  # the two warm-up batches, untimed above: with compiled kernels, their compilation


def measure_speed(*, device: str | torch.device, batch_size: int, height: int, width: int,
                  seconds: float, config: SynthConfig | None = None, seed: int = 0,
                  compile: bool = False) -> GeneratorSpeed:
    """Generated pairs per second after two warm-up batches; bank building and the warm-up (with
    compile=True, the kernels' compilation) are timed separately."""
    cfg = replace(config or SynthConfig(), height=height, width=width)
    dev = resolve_device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    generator = SceneGenerator(cfg, seed=seed, device=dev, compile=compile)
    sync()
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(2):  # the last chunk's length differs from the others': compiled kernels meet both here
        generator.batch(batch_size)
    sync()
    warmup_s = time.perf_counter() - start
    pairs, start = 0, time.perf_counter()
    while True:
        generator.batch(batch_size)
        sync()
        pairs += batch_size
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return GeneratorSpeed(describe(dev), batch_size, height, width, pairs, elapsed, pairs / elapsed, init_s,
                          compile, warmup_s)
