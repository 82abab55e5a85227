"""flowcli.viz: the Middlebury colour wheel (direction -> hue, magnitude -> saturation) and panels."""

from __future__ import annotations

import numpy as np
import pytest

from flowcli.viz import WHEEL, error_to_color, flow_to_color, panel


def colour(u: float, v: float, max_flow: float | None = 1.0) -> list[int]:
    return flow_to_color(np.array([[[u, v]]], np.float32), max_flow=max_flow)[0, 0].tolist()


def test_wheel_has_the_middlebury_55_colours():
    # Baker et al.: RY=15, YG=6, GC=4, CB=11, BM=13, MR=6 steps starting at the six primaries.
    assert WHEEL.shape == (55, 3)
    assert WHEEL[0].tolist() == [255, 0, 0]  # red
    assert WHEEL[15].tolist() == [255, 255, 0]  # yellow
    assert WHEEL[21].tolist() == [0, 255, 0]  # green
    assert WHEEL[25].tolist() == [0, 255, 255]  # cyan
    assert WHEEL[36].tolist() == [0, 0, 255]  # blue
    assert WHEEL[49].tolist() == [255, 0, 255]  # magenta


def test_rightward_flow_is_red():
    assert colour(1.0, 0.0) == [255, 0, 0]


def test_upward_flow_is_blue_violet():
    # angle atan2(1, 0)/pi = 0.5 -> wheel position 40.5, between BM steps 4 and 5: R = (78 + 98) / 2.
    r, g, b = colour(0.0, -1.0)
    assert (g, b) == (0, 255)
    assert r == 88


def test_leftward_flow_is_cyan_blue():
    # position 27 = CB step 2: G = 255 - floor(255 * 2 / 11) = 209.
    assert colour(-1.0, 0.0) == [0, 209, 255]


def test_downward_flow_is_yellow_orange():
    # position 13.5, between RY steps 13 and 14: G = (221 + 238) / 2.
    r, g, b = colour(0.0, 1.0)
    assert (r, b) == (255, 0)
    assert g == 229


def test_zero_flow_is_white_with_and_without_max_flow():
    assert colour(0.0, 0.0) == [255, 255, 255]
    image = flow_to_color(np.zeros((3, 4, 2), np.float32))
    assert (image == 255).all()


def test_half_magnitude_is_less_saturated_same_hue():
    full, half = colour(1.0, 0.0), colour(0.5, 0.0)
    assert half == [255, 127, 127]  # 1 - 0.5 * (1 - colour), floored
    assert min(half) > min(full)
    assert np.argmax(half) == np.argmax(full) == 0


def test_magnitude_is_relative_to_the_field_maximum_by_default():
    flow = np.array([[[4.0, 0.0], [2.0, 0.0]]], np.float32)
    image = flow_to_color(flow)
    assert image[0, 0].tolist() == [255, 0, 0]
    assert image[0, 1].tolist() == [255, 127, 127]
    assert np.array_equal(flow_to_color(flow, max_flow=4.0), image)


def test_beyond_max_flow_is_darker_not_white():
    r, g, b = colour(2.0, 0.0, max_flow=1.0)
    assert (r, g, b) == (191, 0, 0)  # 0.75 * red


def test_invalid_pixels_are_black():
    flow = np.ones((2, 3, 2), np.float32)
    flow[0, 0] = (1e10, 0.0)
    flow[0, 1] = (np.nan, 0.0)
    valid = np.ones((2, 3), bool)
    valid[1, 2] = False
    image = flow_to_color(flow, valid=valid)
    assert image[0, 0].tolist() == [0, 0, 0]
    assert image[0, 1].tolist() == [0, 0, 0]
    assert image[1, 2].tolist() == [0, 0, 0]
    assert image[1, 0].tolist() != [0, 0, 0]
    # the unknown 1e10 must not set the scale: remaining pixels are at full saturation
    assert image[1, 0].tolist() == colour(1.0, 1.0, max_flow=None)  # own maximum: full saturation


def test_wrong_flow_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(4, 4, 3\)"):
        flow_to_color(np.zeros((4, 4, 3)))


def test_error_map_is_black_at_zero_and_bright_at_max():
    heat = error_to_color(np.array([[0.0, 1.0, 2.0]]))
    assert heat.dtype == np.uint8 and heat.shape == (1, 3, 3)
    assert heat[0, 0].tolist() == [0, 0, 0]
    assert heat[0, 2].tolist() == [255, 255, 255]
    assert heat[0, 1].sum() > 0


@pytest.mark.parametrize("gap", [4, 0, 7])
def test_panel_widths(gap):
    height, width = 6, 10
    img = np.full((height, width, 3), 50, np.uint8)
    flow = np.ones((height, width, 2), np.float32)
    with_gt = panel(img, img, flow, flow, gap=gap)
    without = panel(img, img, flow, gap=gap)
    assert with_gt.shape == (height, 5 * width + 4 * gap, 3)
    assert without.shape == (height, 3 * width + 2 * gap, 3)
    assert with_gt.dtype == np.uint8
    if gap:
        assert (with_gt[:, width:width + gap] == 255).all()  # white spacer after image 1


def test_panel_default_gap_and_tile_order():
    height, width, gap = 4, 5, 4
    img1 = np.full((height, width, 3), 10, np.uint8)
    img2 = np.full((height, width, 3), 20, np.uint8)
    gt = np.zeros((height, width, 2), np.float32)
    gt[..., 0] = 2.0
    pred = gt.copy()
    pred[..., 0] = 1.0  # half the ground truth, shown on the ground truth's scale
    out = panel(img1, img2, pred, gt)
    assert out.shape == (height, 5 * width + 4 * gap, 3)
    tile = lambda i: out[:, i * (width + gap): i * (width + gap) + width]
    assert (tile(0) == 10).all() and (tile(1) == 20).all()
    assert tile(2)[0, 0].tolist() == [255, 0, 0]
    assert tile(3)[0, 0].tolist() == [255, 127, 127]
    assert tile(4)[0, 0].tolist() == [255, 255, 255]  # uniform error 1 = the map's maximum


def test_panel_refuses_tiles_of_different_sizes():
    img = np.zeros((6, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        panel(img, img, np.zeros((6, 9, 2), np.float32))
