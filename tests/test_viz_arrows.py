"""flowcli.viz_arrows: arrows start at each cell's centre and point along the flow, nowhere else."""

from __future__ import annotations

import numpy as np
import pytest

from flowcli.errors import FlowcliError
from flowcli.viz import flow_to_color
from flowcli.viz_arrows import default_step, draw_arrows

WHITE = np.full((64, 96, 3), 255, np.uint8)


def constant(u: float, v: float, shape=(64, 96)) -> np.ndarray:
    flow = np.zeros((*shape, 2), np.float32)
    flow[..., 0], flow[..., 1] = u, v
    return flow


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=-1)


def test_a_rightward_flow_draws_arrows_to_the_right_of_their_starts_and_nothing_else():
    step, length = 16, 10
    out = draw_arrows(WHITE, constant(5.0, 0.0), step=step, scale=2.0, coloured=False)
    ink = changed(out, WHITE)
    starts = [(y, x) for y in range(step // 2, 64, step) for x in range(step // 2, 96, step)]
    assert len(starts) == 4 * 6
    owned = np.zeros_like(ink)
    for y, x in starts:
        window = (slice(y - step // 2, y + step // 2), slice(x - 2, x - 2 + step))  # this arrow's own cell
        rows, cols = np.nonzero(ink[window])
        rows, cols = rows - step // 2, cols - 2  # relative to the start
        end = min(length, 95 - x)  # the last column's arrows leave the picture
        assert cols.min() >= -1 and cols.max() == pytest.approx(end, abs=1)  # from the start to start + 10 px
        assert ink[y, x + 1:x + end].all()  # a horizontal shaft along the flow
        assert abs(rows).max() <= 4  # the head's barbs, a few px either side of the shaft
        if end == length:
            assert cols[abs(rows) >= 2].min() >= length // 2  # the barbs are at the tip (right), not at the start
        owned[window] = True
    assert not (ink & ~owned).any()


def test_a_leftward_flow_points_left():
    out = draw_arrows(WHITE, constant(-5.0, 0.0), step=16, scale=2.0, coloured=False)
    ink = changed(out, WHITE)
    assert ink[8, 24 - 9:24].all() and not ink[8, 26:30].any()  # the second arrow, from x = 24 (the third reaches 30)


def test_a_downward_flow_points_down():
    out = draw_arrows(WHITE, constant(0.0, 3.0), step=16, scale=2.0, coloured=False)
    ink = changed(out, WHITE)
    assert ink[9:14, 8].all() and not ink[:7, 8].any()


def test_no_motion_and_unknown_pixels_draw_no_arrow():
    assert np.array_equal(draw_arrows(WHITE, constant(0.0, 0.0), step=16), WHITE)
    flow = constant(4.0, 0.0)
    flow[8, 8] = (np.nan, 0)  # the first arrow's start is unknown
    valid = np.ones((64, 96), bool)
    valid[8, 24] = False  # the second's is not valid
    ink = changed(draw_arrows(WHITE, flow, step=16, scale=2.0, valid=valid, coloured=False), WHITE)
    assert not ink[:16, :32].any() and ink[:16, 32:48].any()


def test_coloured_arrows_take_the_flow_colour_with_a_dark_outline():
    grey = np.full((64, 96, 3), 128, np.uint8)
    flow = constant(6.0, 0.0)
    out = draw_arrows(grey, flow, step=32, scale=2.0, max_flow=6.0, coloured=True)
    assert out[16, 22].tolist() == flow_to_color(flow[:1, :1], max_flow=6.0)[0, 0].tolist() == [255, 0, 0]
    # a 64x96 picture: one-pixel shafts, outlined one pixel either side, the rest untouched
    assert out[15, 22].tolist() == out[17, 22].tolist() == [0, 0, 0]
    assert out[13, 22].tolist() == out[19, 22].tolist() == [128, 128, 128]


def test_a_zoomed_picture_gets_zoomed_arrows():
    big = np.full((128, 192, 3), 255, np.uint8)
    ink = changed(draw_arrows(big, constant(5.0, 0.0), step=16, scale=2.0, zoom=2, coloured=False), big)
    y, x = 2 * 8 + 0.5, 2 * 8 + 0.5  # the first start, in the zoomed picture
    row = ink[int(y)]
    assert row[int(x) + 1:int(x) + 19].all()  # 10 px of arrow, twice as long


def test_default_step_and_bad_options():
    assert default_step(384, 512) == 26 and default_step(50, 50) == 10
    with pytest.raises(FlowcliError, match="arrow_step=0: must be a whole number"):
        draw_arrows(WHITE, constant(1, 0), step=0)
    with pytest.raises(FlowcliError, match="arrow_scale=-1: must be a positive number"):
        draw_arrows(WHITE, constant(1, 0), scale=-1.0)
    with pytest.raises(FlowcliError, match="picture is 64x96 but the flow is 32x96"):
        draw_arrows(WHITE, constant(1, 0, shape=(32, 96)))
