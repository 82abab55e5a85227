"""A sparse arrow field: one arrow per grid cell, from the cell's centre along its flow vector.

Drawn with Pillow's ImageDraw (no plotting library). Over a photo the arrows take the flow's colour
with a dark outline, readable on bright and dark images alike; over the colour-coded flow (already
all colour) they are plain dark lines.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import FlowcliError
from .viz import _known, flow_to_color, shared_max_flow

OUTLINE = (0, 0, 0)
PLAIN = (25, 25, 25)


def default_step(height: int, width: int) -> int:
    """About 20 arrows along the longer side, never closer than 10 px (smaller ones would merge)."""
    return max(10, round(max(height, width) / 20))


def check_arrow_options(step: int | None, scale: float | None) -> None:
    if step is not None and not (isinstance(step, (int, np.integer)) and step >= 1):
        raise FlowcliError(f"arrow_step={step}: must be a whole number of pixels, at least 1")
    if scale is not None and not (scale > 0 and math.isfinite(scale)):
        raise FlowcliError(f"arrow_scale={scale:g}: must be a positive number (arrow length per px of flow)")


def arrow_scale_for(step: int, magnitudes: np.ndarray, max_flow: float) -> float:
    """The default scale: the arrows' 95th-percentile magnitude draws 0.9 steps long, so most arrows
    are long enough to read and do not run into their neighbours; never longer than 3 steps at
    max_flow (a few fast pixels would otherwise cross the picture). magnitudes: the arrows' lengths."""
    reference = max(float(np.percentile(magnitudes, 95)) if magnitudes.size else 0.0, max_flow / 3)
    return 0.9 * step / reference if reference > 0 else 1.0


def draw_arrows(image: np.ndarray, flow: np.ndarray, *, step: int | None = None, scale: float | None = None,
                max_flow: float | None = None, valid: np.ndarray | None = None, zoom: int = 1,
                coloured: bool = True) -> np.ndarray:
    """`image` ((H*zoom, W*zoom, 3) uint8) with an arrow every `step` px of the (H, W, 2) `flow`.

    An arrow starts at its cell's centre and ends at start + flow * scale (times zoom, for a picture
    drawn larger than the flow); unknown pixels and arrows under one pixel long are left out.
    `scale` defaults to arrow_scale_for (max_flow: the field's maximum if None).
    coloured=True: the flow's colour (on the max_flow scale) with a dark outline, for photos."""
    check_arrow_options(step, scale)
    height, width = flow.shape[:2]
    if image.shape[:2] != (height * zoom, width * zoom):
        raise FlowcliError(f"arrows: the picture is {image.shape[0]}x{image.shape[1]} but the flow is "
                           f"{height}x{width} (x{zoom})")
    step = step or default_step(height, width)
    rows = np.arange(step // 2, height, step)
    cols = np.arange(step // 2, width, step)
    u, v, known = _known(flow[np.ix_(rows, cols)], None if valid is None else np.asarray(valid, bool)[np.ix_(rows, cols)])
    if max_flow is None:
        max_flow = shared_max_flow([flow], [valid])
    scale = scale or arrow_scale_for(step, np.hypot(u, v)[known], max_flow)
    colours = flow_to_color(np.stack([u, v], -1), max_flow=max_flow or None)
    width_px = max(1, round(min(height, width) * zoom / 250))
    arrows = []
    for i, y in enumerate(rows):
        for j, x in enumerate(cols):
            dx, dy = u[i, j] * scale * zoom, v[i, j] * scale * zoom
            if known[i, j] and math.hypot(dx, dy) >= 1:
                start = ((x + 0.5) * zoom - 0.5, (y + 0.5) * zoom - 0.5)
                arrows.append((_arrow_lines(start, dx, dy, width_px), tuple(int(c) for c in colours[i, j])))
    return _draw(image, arrows, width_px, coloured)


def _arrow_lines(start: tuple[float, float], dx: float, dy: float, width: int) -> list[tuple[float, ...]]:
    """The shaft and the two barbs of the head (30 degrees each side, a third of the length at most)."""
    x0, y0 = start
    x1, y1 = x0 + dx, y0 + dy
    length = math.hypot(dx, dy)
    head = min(length / 3, 3 + 3 * width)
    angle = math.atan2(dy, dx)
    barbs = [(x1 - head * math.cos(angle + side), y1 - head * math.sin(angle + side)) for side in (0.5, -0.5)]
    return [(x0, y0, x1, y1)] + [(x1, y1, bx, by) for bx, by in barbs]


def _draw(image: np.ndarray, arrows: list, width: int, coloured: bool) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    if coloured:  # every outline first, so one arrow's outline never covers its neighbour's colour
        for lines, _ in arrows:
            for line in lines:
                draw.line(line, fill=OUTLINE, width=width + 2)
    for lines, colour in arrows:
        for line in lines:
            draw.line(line, fill=colour if coloured else PLAIN, width=width)
    return np.asarray(canvas).copy()
