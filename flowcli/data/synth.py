"""Flying-Chairs-style training pairs, generated in batches on the CPU or a GPU with the same code.

A scene is a textured background plus several textured foreground objects (polygons, ellipses,
blobs with holes, thin bars, chair-like composites). Each layer lives in a canonical frame with a
texture and a mask drawn once into banks (`textures.py`); frame t maps canonical coordinates to
pixels with an affine A_t, and A_2 = D A_1 where D is the layer's motion. Rendering inverts A_t
per pixel and samples the banks; the front-most layer wins. The flow of image 1 is therefore
analytic and exact: flow(p) = D(p) - p for the layer in front at p, so img2(p + flow(p)) ==
img1(p) wherever p stays visible. D may also be a homography (a layer turning in depth; the
"wide" motion profile), then every mapping divides by its third coordinate. What a scene is, and
the random draw of its layers, is scenes.py; this module renders them.

Speed is the point (the generator bounds training speed): all random draws are a few small
tensors on the CPU (reproducible on every device); the device then runs two vectorised passes over
both frames of the whole batch: masks tested inside each object's bounding box decide the front
layer (a scatter max), then one bilinear texture lookup per pixel colours it. On the CPU the passes
run in cache-sized chunks; on a GPU in a few large launches.
"""

from __future__ import annotations

import functools
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
from .occlusion import true_occlusion
from .render import kernels
from .scenes import MOTIONS, Draws, SynthConfig, inverse_homographies, sample_scenes  # noqa: F401  MOTIONS: its home before 0.13.0
from .textures import build_shape_bank, build_texture_bank, load_photo_textures, mask_boxes


@dataclass
class SceneBatch:
    """One rendered batch; layers are front-most layer ids per pixel (0 = background)."""

    img1: Tensor  # (B, 3, H, W) in [0, 1]
    img2: Tensor  # (B, 3, H, W)
    flow: Tensor  # (B, 2, H, W) px, img2(p + flow(p)) == img1(p) where visible
    layers1: Tensor  # (B, H, W) int32
    layers2: Tensor  # (B, H, W) int32


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
        self._draw = Draws(torch.Generator().manual_seed((seed * 0x9E3779B1 + 0x7F4A7C15) % 2**63))

    def batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """(img1, img2, flow): (n, 3, H, W) images in [0, 1] and (n, 2, H, W) flow in pixels."""
        scene = self.render(n)
        return scene.img1, scene.img2, scene.flow

    def render(self, n: int) -> SceneBatch:
        """Like `batch`, plus the front-most layer id of every pixel in both frames (occlusions)."""
        if n < 1:
            raise ValueError(f"batch size must be at least 1, got {n}")
        cfg = self.config
        sc = sample_scenes(cfg, self._draw, n, self.n_textures, self._backdrops, self.n_photos,
                            self._mask_boxes[:, 2:].amax(-1))
        # 2n views: frame 1 of every scene, then frame 2; A_2 = D A_1.
        a = torch.cat([sc.a1, sc.motion @ sc.a1])
        inv = inverse_homographies(a)
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
                  device: str | torch.device = "auto", compile: bool = False) -> list[str]:
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
