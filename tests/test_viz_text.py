"""flowcli.viz_text: the font, the colour-wheel legend, titles and the error colour bar."""

from __future__ import annotations

import numpy as np
import pytest

from flowcli.viz import error_to_color, flow_to_color
from flowcli.viz_text import (
    add_legend, colour_bar, format_px, legend_box, legend_radius, load_font, nice_ticks, text_size, title_strip,
)


def saturated(image: np.ndarray) -> np.ndarray:
    """Pixels whose channels differ a lot: the wheel's colours, not white paper, grey frame or black ink."""
    image = image.astype(int)
    return image.max(axis=-1) - image.min(axis=-1) > 60


def find_disc(box: np.ndarray) -> tuple[int, int, int]:
    """(centre row, centre column, radius) of the wheel, from the bounding box of its saturated rim."""
    rows, cols = np.nonzero(saturated(box))
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert bottom - top == right - left  # a disc, not an ellipse
    return (top + bottom) // 2, (left + right) // 2, (bottom - top) // 2


def test_the_legend_changes_only_its_corner():
    flow = np.random.default_rng(0).normal(0, 5, (240, 320, 2)).astype(np.float32)
    image = flow_to_color(flow, max_flow=20.0)
    placed = add_legend(image, 20.0)
    assert placed.image.shape == image.shape  # drawn over the picture, which keeps its size
    rows, cols = np.nonzero((placed.image != image).any(axis=-1))
    assert rows.size > 0
    assert rows.min() >= 240 // 2 and cols.min() >= 320 // 2  # the bottom-right quarter ...
    assert rows.max() < 240 - 1 and cols.max() < 320 - 1  # ... with a margin from the edges
    box = placed.image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert (rows.min(), cols.min()) == (placed.top, placed.left)
    for edge in (box[0], box[-1], box[:, 0], box[:, -1]):  # a framed box, drawn whole
        assert (edge == box[0, 0]).all()


def test_the_legend_disc_shows_flow_to_color_of_its_vectors():
    max_flow = 37.5
    box = legend_box(max_flow, load_font(16))
    cy, cx, radius = find_disc(box)
    assert radius == legend_radius(load_font(16))
    # the rim to the right of the centre is rightward flow at full saturation: pure red
    assert box[cy, cx + radius].tolist() == [255, 0, 0]
    assert box[cy, cx].tolist() == [255, 255, 255]  # the centre: no motion, white
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    inside = dx**2 + dy**2 <= radius**2
    expected = flow_to_color(np.stack([dx, dy], -1) / radius * max_flow, max_flow=max_flow)
    disc = box[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1].astype(int)
    assert np.abs(disc[inside] - expected[inside]).max() <= 1  # floor() of two float paths may differ by 1
    assert (disc[~inside] == 255).all()  # white paper around the disc (the label is further right)


def test_the_legend_label_is_written_beside_the_disc_and_follows_the_value():
    font = load_font(16)
    small, large = legend_box(4.0, font), legend_box(76.36, font)
    cy, cx, radius = find_disc(large)
    label = large[2:-2, cx + radius + 2:-2]
    ink = (label < 100).all(axis=-1)
    assert ink.any() and not ink[:, : 1].any()
    assert large.shape[1] - small.shape[1] == text_size("76.4 px", font)[0] - text_size("4.00 px", font)[0]
    same = np.abs(small[:, : cx + radius + 2].astype(int) - large[:, : cx + radius + 2]).max()
    assert same <= 1  # the same disc (up to floor() of scaled floats): only the label differs


@pytest.mark.parametrize("value, text", [(76.36, "76.4 px"), (4.274, "4.27 px"), (123.4, "123 px"), (0, "0.00 px")])
def test_format_px(value, text):
    assert format_px(value) == text


def test_a_picture_too_small_for_the_legend_gets_a_strip_below_and_keeps_its_pixels():
    image = flow_to_color(np.ones((20, 30, 2), np.float32))
    placed = add_legend(image, 1.0)
    assert placed.image.shape[0] > 20 and placed.image.shape[1] >= 30
    assert np.array_equal(placed.image[:20, :30], image)
    assert placed.top >= 20


def test_titles_are_centred_over_their_tiles_and_nowhere_else():
    font = load_font(14)
    strip = title_strip([120, 90], ["image 1", "error"], font, gap=10)
    assert strip.shape[1] == 220
    ink = (strip < 128).all(axis=-1)
    cols = np.nonzero(ink.any(axis=0))[0]
    first, second = cols[cols < 120], cols[cols >= 120]
    assert not ink[:, 120:130].any()  # nothing over the gap
    assert abs((first.min() + first.max()) / 2 - 60) <= 3  # centred over the first tile ...
    assert abs((second.min() + second.max()) / 2 - 175) <= 3  # ... and the second


def test_the_font_falls_back_on_pillow_without_a_size_argument(monkeypatch):
    from PIL import ImageFont

    original = ImageFont.load_default

    def old_pillow(*args, **kwargs):  # Pillow < 10.1: load_default() takes no size
        if args or kwargs:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return original()

    monkeypatch.setattr(ImageFont, "load_default", old_pillow)
    font = load_font(20)
    width, height = text_size("12.3 px", font)
    assert width > 0 and height > 0
    assert legend_box(12.3, font).shape[0] > 2 * height  # the layout follows the measured text


@pytest.mark.parametrize("top, ticks", [(7.3, [0, 2, 4, 6]), (80.0, [0, 20, 40, 60, 80]), (0.9, [0, 0.25, 0.5, 0.75]),
                                        (0.0, [0]), (1e-6, [0])])
def test_nice_ticks(top, ticks):
    assert nice_ticks(top) == pytest.approx(ticks)


def test_the_colour_bar_matches_error_to_color_at_its_ticks():
    top = 7.3
    bar = colour_bar(240, top, load_font(14))
    assert [v for _, v in bar.ticks] == pytest.approx([0, 2, 4, 6])
    strip = bar.image[bar.bar_rows]
    for column, value in bar.ticks:
        expected = error_to_color(np.array([[value]]), max_error=top)[0, 0]
        assert (strip[:, column] == expected).all(), (column, value)
    columns = np.array([c for c, _ in bar.ticks])
    steps = np.diff(columns)
    assert steps.max() - steps.min() <= 1  # evenly spaced: px are linear along the bar
    # the bar runs from black (0 px) and only brightens towards the top
    assert strip[0, columns[0]].tolist() == [0, 0, 0]
    brightness = strip[0, columns[0]:columns[-1] + 1].astype(int).sum(axis=-1)
    assert (np.diff(brightness) >= 0).all() and brightness[-1] > 400
    ink = (bar.image[bar.bar_rows.stop:] < 100).all(axis=-1)
    assert ink[:, columns].any(axis=0).all()  # a tick mark under every labelled column
