"""The labelled comparison panel: a title over each tile, the tiles (enlarged when too small for their
titles), and a footer with the colour-wheel legend under the flow tiles and the error colour bar
under the error map. numpy and Pillow only."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .viz import panel_tiles
from .viz_arrows import draw_arrows
from .viz_text import ColourBar, colour_bar, font_size, format_px, legend_box, load_font, text_size, title_strip

MAX_HEIGHT = 2048  # tiles are enlarged (a 50x50 Chairs crop to 150x150) but never past this height


class Box(NamedTuple):
    top: int
    left: int
    height: int
    width: int


class LabelledPanel(NamedTuple):
    image: np.ndarray
    tiles: list[Box]  # where each tile landed, in panel order
    zoom: int  # each tile pixel is zoom x zoom pixels (nearest neighbour)
    max_flow: float  # the flow tiles' colour scale (px shown fully saturated)
    bar: ColourBar | None  # the error colour bar (ground truth only) ...
    bar_at: tuple[int, int] | None  # ... and its top-left corner in the panel
    legend_at: Box | None  # the legend box, if drawn


def panel_titles(has_gt: bool, epe: float | None) -> list[str]:
    if not has_gt:
        return ["image 1", "image 2", "prediction"]
    error = "error" if epe is None else f"error, EPE {format_px(epe)}"
    return ["image 1", "image 2", "ground truth", "prediction", error]


def labelled_panel(img1: np.ndarray, img2: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None,
                   valid: np.ndarray | None = None, *, max_flow: float | None = None, epe: float | None = None,
                   legend: bool = True, arrows: bool = False, arrow_step: int | None = None,
                   arrow_scale: float | None = None, gap: int = 4) -> LabelledPanel:
    """viz.panel's tiles with titles above ("error, EPE 1.23 px" when `epe` is given), the legend of
    the flow tiles' shared scale and the error map's colour bar below; with arrows=True, the
    prediction's arrow field over image 1 (viz_arrows.draw_arrows, step in the flow's pixels)."""
    parts = panel_tiles(img1, img2, pred, gt, valid, max_flow=max_flow)
    height, width = parts.tiles[0].shape[:2]
    font = load_font(font_size(height, width))
    titles = panel_titles(gt is not None, epe)
    flow_tiles = 2 if gt is not None else 1
    legend_image = legend_box(parts.max_flow, font) if legend else None
    text_h = text_size("0", font)[1]
    needed = max(text_size(t, font)[0] + 2 * text_h for t in titles)  # each title fits over its tile, with room
    if legend_image is not None:  # the legend fits under the flow tiles
        needed = max(needed, math.ceil((legend_image.shape[1] - (flow_tiles - 1) * gap) / flow_tiles))
    if gt is not None:
        needed = max(needed, 8 * text_h)  # room for a few tick labels
    zoom = int(max(1, min(math.ceil(needed / width), MAX_HEIGHT // height)))
    tiles = [np.repeat(np.repeat(t, zoom, 0), zoom, 1) for t in parts.tiles]
    if arrows:
        tiles[0] = draw_arrows(tiles[0], pred, step=arrow_step, scale=arrow_scale, max_flow=parts.max_flow,
                               zoom=zoom, coloured=True)
    tile_h, tile_w = tiles[0].shape[:2]
    strip = title_strip([tile_w] * len(tiles), titles, font, gap)
    spacer = np.full((tile_h, gap, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, spacer)][:-1], axis=1)
    footer, bar, bar_at, legend_at = _footer(row.shape[1], tile_w, gap, len(tiles), legend_image,
                                             parts.max_error, font, top=strip.shape[0] + tile_h)
    image = np.concatenate([strip, row] + ([footer] if footer is not None else []), axis=0)
    boxes = [Box(strip.shape[0], i * (tile_w + gap), tile_h, tile_w) for i in range(len(tiles))]
    return LabelledPanel(image, boxes, zoom, parts.max_flow, bar, bar_at, legend_at)


def _footer(total_w: int, tile_w: int, gap: int, count: int, legend_image: np.ndarray | None,
            max_error: float | None, font, *, top: int):
    """The white strip under the tiles: legend centred under the flow tiles, bar under the error map."""
    bar = colour_bar(tile_w, max_error, font) if max_error is not None else None
    parts = [p for p in (legend_image, None if bar is None else bar.image) if p is not None]
    if not parts:
        return None, None, None, None
    margin = max(3, text_size("0", font)[1] // 3)
    footer = np.full((max(p.shape[0] for p in parts) + 2 * margin, total_w, 3), 255, np.uint8)
    bar_at = legend_at = None
    if bar is not None:
        left = (count - 1) * (tile_w + gap)
        footer[margin:margin + bar.image.shape[0], left:left + tile_w] = bar.image
        bar_at = (top + margin, left)
    if legend_image is not None:
        first = 2 if count == 5 else count - 1  # ground truth (and prediction), or the prediction alone
        span_left, span_w = first * (tile_w + gap), (count - first - (1 if bar is not None else 0)) * (tile_w + gap) - gap
        box_h, box_w = legend_image.shape[:2]
        left = max(0, min(span_left + (span_w - box_w) // 2, total_w - box_w))
        box_w = min(box_w, total_w)  # only a panel of very thin tiles crops it
        footer[margin:margin + box_h, left:left + box_w] = legend_image[:, :box_w]
        legend_at = Box(top + margin, left, box_h, box_w)
    return footer, bar, bar_at, legend_at
