"""What makes a flow picture explain itself: Pillow's default font, titles, the colour-wheel legend
(a disc of the Middlebury wheel and the magnitude shown fully saturated) and the error colour bar.

numpy and Pillow only (Pillow comes with imageio). Every function returns a new uint8 image.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .viz import error_to_color, flow_to_color

INK = (20, 20, 20)  # text and tick marks: near black on the white strips and boxes
PAPER = (255, 255, 255)
FRAME = (150, 150, 150)  # the legend box's border: visible on white flow and on dark images


def load_font(size: int):
    """Pillow's default font at `size` px where the installed Pillow can scale it (>= 10.1 with
    FreeType); otherwise its fixed ~11 px bitmap font. Layout measures the text, so both fit."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 (no size argument), or no FreeType
        return ImageFont.load_default()


def font_size(height: int, width: int) -> int:
    """A readable size for a picture of this size: 12 px for small ones, up to 32 px for large."""
    return int(min(32, max(12, round(min(height, width) / 24))))


def text_size(text: str, font) -> tuple[int, int]:
    """(width, height) in px of `text` drawn with `font` (height from the top of the ink box at y=0)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return int(math.ceil(right)), int(math.ceil(bottom))


def draw_text(image: np.ndarray, xy: tuple[int, int], text: str, font, fill=INK) -> np.ndarray:
    """`image` with `text` drawn, its top-left corner at xy = (x, y)."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    ImageDraw.Draw(canvas).text(xy, text, font=font, fill=fill)
    return np.asarray(canvas).copy()


def title_strip(widths: list[int], titles: list[str], font, gap: int) -> np.ndarray:
    """A white strip with each title centred over its tile (tiles `widths` wide, `gap` apart)."""
    height = max(text_size(t, font)[1] for t in titles) + max(4, text_size("Ag", font)[1] // 2)
    strip = np.full((height, sum(widths) + gap * (len(widths) - 1), 3), 255, np.uint8)
    left = 0
    for width, title in zip(widths, titles):
        text_w, text_h = text_size(title, font)
        strip = draw_text(strip, (left + max(0, (width - text_w) // 2), (height - text_h) // 2 + 1), title, font)
        left += width + gap
    return strip


def format_px(value: float) -> str:
    """'61.5 px', '4.27 px', '123 px': three significant digits at most, no exponent."""
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} px"


# -- the colour-wheel legend --------------------------------------------------------------------------

def legend_radius(font) -> int:
    """The disc's radius: about 1.5 lines of text, so the wheel's hues can be told apart."""
    return max(8, round(1.5 * text_size("0", font)[1]))


def wheel_disc(radius: int, max_flow: float) -> tuple[np.ndarray, np.ndarray]:
    """(colours (2r+1, 2r+1, 3), inside mask): the pixel at offset (dx, dy) from the centre shows the
    flow (dx, dy) * max_flow / radius as flow_to_color does, so the rim is `max_flow` px."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    dx, dy = np.meshgrid(offsets, offsets)
    scale = max_flow if max_flow > 0 else 1.0  # a field without motion: show the directions anyway
    flow = np.stack([dx, dy], -1) * (scale / radius)
    return flow_to_color(flow, max_flow=scale), dx**2 + dy**2 <= radius**2


def legend_box(max_flow: float, font) -> np.ndarray:
    """A white box, grey border: the wheel disc and, beside it, the magnitude shown fully saturated."""
    radius = legend_radius(font)
    label = format_px(max_flow)
    text_w, text_h = text_size(label, font)
    pad = max(3, radius // 3)
    height = 2 * radius + 1 + 2 * pad
    width = pad + 2 * radius + 1 + pad + text_w + pad
    box = np.full((height, width, 3), 255, np.uint8)
    colours, inside = wheel_disc(radius, max_flow)
    disc = box[pad:pad + 2 * radius + 1, pad:pad + 2 * radius + 1]
    disc[inside] = colours[inside]
    box = draw_text(box, (2 * pad + 2 * radius + 1, (height - text_h) // 2), label, font)
    box[[0, -1], :] = FRAME
    box[:, [0, -1]] = FRAME
    return box


class Placed(NamedTuple):
    image: np.ndarray
    top: int  # where the legend box's top-left corner landed
    left: int


def add_legend(image: np.ndarray, max_flow: float, *, font=None) -> Placed:
    """`image` with the legend box in its bottom-right corner (a margin from the edges). A picture too
    small to hold it without hiding most of the flow gets a white strip below for it instead."""
    height, width = image.shape[:2]
    box = legend_box(max_flow, font or load_font(font_size(height, width)))
    margin = max(2, min(height, width) // 64)
    box_h, box_w = box.shape[:2]
    if box_h + 2 * margin <= height / 2 and box_w + 2 * margin <= width / 2:
        out = image.copy()
        top, left = height - margin - box_h, width - margin - box_w
    else:  # below the picture, which keeps every one of its pixels
        out = np.full((height + box_h + 2 * margin, max(width, box_w + 2 * margin), 3), 255, np.uint8)
        out[:height, :width] = image
        top, left = height + margin, margin
    out[top:top + box_h, left:left + box_w] = box
    return Placed(out, top, left)


# -- the error colour bar -----------------------------------------------------------------------------

class ColourBar(NamedTuple):
    image: np.ndarray  # the bar, tick marks and labels on white
    bar_rows: slice  # rows of the coloured bar itself
    ticks: list[tuple[int, float]]  # (column, value in px) of each labelled tick


def nice_ticks(top: float, most: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 x 10^k) up to `top`, at most `most` of them."""
    if not top >= 1e-3:  # no error to speak of (a perfect prediction): 0 alone, not ticks in 1e-07 px
        return [0.0]
    raw = top / max(most - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [round(k * step, 10) for k in range(int(math.floor(top / step + 1e-9)) + 1)]


def colour_bar(width: int, max_error: float, font) -> ColourBar:
    """A horizontal bar of error_to_color from 0 to `max_error` px, `width` px long, with px ticks.

    Each column shows the error at its place on the bar, and a tick's column exactly its label's
    value (the nearest column is within half a column of it), so the bar reads like the map."""
    _, text_h = text_size("0", font)
    pad = max(2, text_h // 3)
    bar_h = max(6, text_h)
    inner = max(2, width - 2 * pad)
    values = np.linspace(0.0, max_error, inner)
    ticks = []
    for value in nice_ticks(max_error, most=max(2, min(6, inner // (4 * text_h) + 1))):
        column = int(round(value / max_error * (inner - 1))) if max_error > 0 else 0
        values[column] = value
        ticks.append((pad + column, value))
    height = pad + bar_h + pad + text_h + pad + 2
    image = np.full((height, width, 3), 255, np.uint8)
    image[pad:pad + bar_h, pad:pad + inner] = error_to_color(np.tile(values, (bar_h, 1)), max_error=max_error)
    mark = pad + bar_h
    for index, (column, value) in enumerate(ticks):
        image[mark:mark + pad, column] = INK
        label = f"{value:g}" + (" px" if index == len(ticks) - 1 else "")
        label_w = text_size(label, font)[0]
        left = min(max(0, column - label_w // 2), width - label_w)
        image = draw_text(image, (left, mark + pad), label, font)
    return ColourBar(image, slice(pad, pad + bar_h), ticks)
