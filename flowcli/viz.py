"""Flow to colour with the Middlebury colour wheel (Baker et al., IJCV 2011), and comparison panels.

Hue encodes direction, saturation encodes magnitude relative to `max_flow` (or the field's own
maximum); zero flow is white. numpy only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .errors import FlowcliError, FlowFormatError, ImageError

# Number of hue steps between the six primary/secondary colours of the Middlebury wheel.
RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6


def color_wheel() -> np.ndarray:
    """(55, 3) float colours in [0, 255]: red -> yellow -> green -> cyan -> blue -> magenta."""
    ramps = []
    for steps, start, rising, channel_from, channel_to in (
        (RY, (255, 0, 0), True, None, 1),
        (YG, (255, 255, 0), False, 0, None),
        (GC, (0, 255, 0), True, None, 2),
        (CB, (0, 255, 255), False, 1, None),
        (BM, (0, 0, 255), True, None, 0),
        (MR, (255, 0, 255), False, 2, None),
    ):
        ramp = np.tile(np.array(start, dtype=np.float64), (steps, 1))
        values = np.floor(255 * np.arange(steps) / steps)
        if rising:
            ramp[:, channel_to] = values
        else:
            ramp[:, channel_from] = 255 - values
        ramps.append(ramp)
    return np.concatenate(ramps)


WHEEL = color_wheel()
WHEEL_LEVELS = WHEEL.astype(np.float32)
CHUNK_PIXELS = 1 << 20  # pixels coloured at a time: a float64 copy of a 20000x20000 field takes 3.2 GB


def flow_to_color(flow: np.ndarray, *, max_flow: float | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 2) flow -> (H, W, 3) uint8 colour image; invalid pixels are black."""
    check_max_flow(max_flow)
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise FlowFormatError(f"expected an HxWx2 flow, got shape {flow.shape}")
    valid = None if valid is None else np.asarray(valid, dtype=bool)
    rows = max(1, CHUNK_PIXELS // max(flow.shape[1], 1))
    chunks = [slice(top, top + rows) for top in range(0, flow.shape[0], rows)]
    known = lambda rows: _known(flow[rows], None if valid is None else valid[rows])
    if max_flow is None:  # the field's own maximum (0 when nothing is known)
        max_flow = max((float(np.sqrt(u**2 + v**2).max(initial=0.0)) for u, v, _ in map(known, chunks)), default=0.0)
    image = np.empty((*flow.shape[:2], 3), np.uint8)
    for rows in chunks:
        image[rows] = _colour(*known(rows), max_flow)
    return image


def _known(flow: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, known) in float32, unknown pixels (not finite, over 1e9, or not valid) zeroed."""
    flow = flow.astype(np.float32, copy=False)
    u, v = flow[..., 0], flow[..., 1]
    known = np.isfinite(u) & np.isfinite(v) & (np.abs(u) < 1e9) & (np.abs(v) < 1e9)
    if valid is not None:
        known &= valid
    return np.where(known, u, 0), np.where(known, v, 0), known


def _colour(u: np.ndarray, v: np.ndarray, known: np.ndarray, scale: float) -> np.ndarray:
    # float32 throughout: 4-5x faster than float64 (a 720p frame of a flow video in ~0.1 s, not ~0.5 s);
    # a colour differs by at most one level of 255.
    radius = np.hypot(u, v)
    if scale > 0:
        inverse = np.float32(1 / scale)
        u, v, radius = u * inverse, v * inverse, radius * inverse
    angle = np.arctan2(-v, -u) / np.float32(np.pi)  # in [-1, 1]; rightward flow lands at hue 0 (red)
    position = (angle + 1) * np.float32((len(WHEEL) - 1) / 2)
    k0 = position.astype(np.int32)  # floor: position >= 0
    k1 = (k0 + 1) % len(WHEEL)
    frac = (position - k0)[..., None]
    col = WHEEL_LEVELS[k0]  # in levels 0..255: the wheel's integers stay exact in float32
    col += frac * (WHEEL_LEVELS[k1] - col)
    r = radius[..., None]
    col = np.where(r <= 1, 255 - r * (255 - col), col * np.float32(0.75))  # out of range: desaturated, darker
    image = col.astype(np.uint8)  # floor: col >= 0
    image[~known] = 0
    return image


def check_max_flow(max_flow: float | None) -> None:
    """max_flow is None (the field's own maximum) or a positive, finite number of pixels."""
    if max_flow is not None and not (max_flow > 0 and math.isfinite(max_flow)):
        raise FlowcliError(f"max_flow={max_flow:g}: must be a positive number of pixels "
                           "(the magnitude shown fully saturated)")


def error_to_color(error: np.ndarray, *, max_error: float | None = None) -> np.ndarray:
    """Per-pixel EPE (H, W) -> dark-to-bright heat map (black = 0, yellow-white = max)."""
    error = np.nan_to_num(np.asarray(error, dtype=np.float64))
    top = max_error if max_error else max(float(error.max()), 1e-6)
    t = np.clip(error / top, 0, 1)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
    return (rgb * 255).astype(np.uint8)


def panel(
    img1: np.ndarray,
    img2: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    *,
    max_flow: float | None = None,
    gap: int = 4,
) -> np.ndarray:
    """image 1 | image 2 | ground truth | prediction | error map, side by side (one uint8 image).

    Ground truth and prediction share one colour scale (max_flow, by default the ground truth's
    maximum) so that they can be compared by eye. Without ground truth: image 1 | image 2 | prediction.
    """
    tiles = panel_tiles(img1, img2, pred, gt, valid, max_flow=max_flow).tiles
    height = tiles[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row = []
    for tile in tiles:
        if tile.shape[:2] != (height, tiles[0].shape[1]):
            raise ImageError(f"panel tiles differ in size: {tile.shape[0]}x{tile.shape[1]} vs "
                             f"{tiles[0].shape[0]}x{tiles[0].shape[1]}")
        row += [tile, spacer]
    return np.concatenate(row[:-1], axis=1)


class PanelTiles(NamedTuple):
    """The panel's tiles before they are joined, and the scales they were coloured with."""

    tiles: list[np.ndarray]  # image 1, image 2, [ground truth], prediction, [error map]
    max_flow: float  # the magnitude shown fully saturated (0: no motion anywhere)
    max_error: float | None  # the error map's top (ground truth only)


def panel_tiles(img1: np.ndarray, img2: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None,
                valid: np.ndarray | None = None, *, max_flow: float | None = None) -> PanelTiles:
    """The tiles of `panel`: ground truth and prediction on one colour scale (max_flow, by default
    the ground truth's maximum, or the prediction's without ground truth)."""
    check_max_flow(max_flow)
    if gt is None:
        scale = max_flow or shared_max_flow([pred])
        return PanelTiles([img1, img2, flow_to_color(pred, max_flow=scale or None)], scale, None)
    valid = np.ones(gt.shape[:2], bool) if valid is None else valid
    scale = max_flow or shared_max_flow([gt], [valid])
    error = np.where(valid, np.linalg.norm(gt - pred, axis=2), 0)
    max_error = max(float(np.nan_to_num(error).max()), 1e-6)  # error_to_color's own top
    tiles = [img1, img2, flow_to_color(gt, max_flow=scale or None, valid=valid),
             flow_to_color(pred, max_flow=scale or None), error_to_color(error, max_error=max_error)]
    return PanelTiles(tiles, scale, max_error)


def shared_max_flow(flows: list[np.ndarray], valids: list[np.ndarray | None] | None = None) -> float:
    """The largest known magnitude over all `flows` (unknown pixels left out; 0 when none moves):
    the one colour scale that lets fields be compared by eye."""
    valids = valids or [None] * len(flows)
    top = 0.0
    for flow, valid in zip(flows, valids):
        rows = max(1, CHUNK_PIXELS // max(flow.shape[1], 1))  # chunks, as flow_to_color does
        for start in range(0, flow.shape[0], rows):
            part = slice(start, start + rows)
            u, v, _ = _known(flow[part], None if valid is None else np.asarray(valid, bool)[part])
            top = max(top, float(np.sqrt(u**2 + v**2).max(initial=0.0)))
    return top
