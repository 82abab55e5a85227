"""flowcli.viz: the Middlebury colour wheel (direction -> hue, magnitude -> saturation) and panels."""

from __future__ import annotations

import numpy as np
import pytest

from flowcli.errors import FlowcliError, FlowFormatError, ImageError
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


def test_large_fields_are_coloured_in_chunks_to_the_same_pixels(monkeypatch):
    import flowcli.viz

    rng = np.random.default_rng(2)
    flow = rng.normal(0, 4, (37, 23, 2)).astype(np.float32)
    flow[5, 5] = (np.nan, 0)
    flow[30, 1] = (50.0, 0)  # the maximum sits in the last chunk: every chunk must use it
    whole = flow_to_color(flow)
    monkeypatch.setattr(flowcli.viz, "CHUNK_PIXELS", 23 * 4)  # 4 rows at a time, 10 chunks
    assert np.array_equal(flow_to_color(flow), whole)
    assert whole[5, 5].tolist() == [0, 0, 0] and whole[30, 1].tolist() == [255, 0, 0]


def test_wrong_flow_shape_is_refused():
    with pytest.raises(FlowFormatError, match=r"\(4, 4, 3\)"):
        flow_to_color(np.zeros((4, 4, 3)))


@pytest.mark.parametrize("max_flow", [0, -2.5, float("nan"), float("inf")])
def test_max_flow_must_be_a_positive_number(max_flow):
    with pytest.raises(FlowcliError, match=f"max_flow={max_flow:g}: must be a positive number"):
        flow_to_color(np.ones((2, 2, 2)), max_flow=max_flow)
    with pytest.raises(FlowcliError, match="max_flow="):
        panel(*[np.zeros((2, 2, 3), np.uint8)] * 2, np.ones((2, 2, 2)), max_flow=max_flow)


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
    with pytest.raises(ImageError, match="differ in size: 6x9 vs 6x10"):
        panel(img, img, np.zeros((6, 9, 2), np.float32))


def test_panel_max_flow_sets_the_scale_of_ground_truth_and_prediction():
    img = np.zeros((4, 5, 3), np.uint8)
    gt = np.zeros((4, 5, 2), np.float32)
    gt[..., 0] = 2.0
    pred = gt / 2
    out = panel(img, img, pred, gt, max_flow=4.0, gap=0)
    assert np.array_equal(out[:, 10:15], flow_to_color(gt, max_flow=4.0))  # half saturated, not full
    assert np.array_equal(out[:, 15:20], flow_to_color(pred, max_flow=4.0))
    alone = panel(img, img, pred, max_flow=4.0, gap=0)
    assert np.array_equal(alone[:, 10:15], flow_to_color(pred, max_flow=4.0))


# -- flowcli.inference.visualize: the API behind `flowcli visualize` ------------------------------------

def test_draw_flow_returns_the_colour_image_and_writes_it_when_asked(tmp_path):
    from flowcli.inference.visualize import draw_flow
    from flowcli.io import read_image, write_flo

    flow = np.random.default_rng(0).normal(0, 2, (6, 7, 2)).astype(np.float32)
    flow[0, 0] = (2e9, 0)  # unknown: black
    drawing = draw_flow(flow, max_flow=3.0, legend=False)
    assert drawing.output is None and drawing.epe is None and drawing.max_flow == 3.0
    assert np.array_equal(drawing.image, flow_to_color(flow, max_flow=3.0))
    assert drawing.image[0, 0].tolist() == [0, 0, 0]
    write_flo(tmp_path / "f.flo", flow)
    written = draw_flow(tmp_path / "f.flo", max_flow=3.0, legend=False, output=tmp_path / "f.png")
    assert np.array_equal(read_image(tmp_path / "f.png"), drawing.image)
    assert written.as_dict() == {"output": str(tmp_path / "f.png"), "height": 6, "width": 7, "epe": None,
                                 "max_flow": 3.0}


def test_draw_flow_adds_the_legend_and_arrows_by_request():
    from flowcli.inference.visualize import draw_flow
    from flowcli.viz_arrows import draw_arrows
    from flowcli.viz_text import add_legend

    flow = np.zeros((96, 128, 2), np.float32)
    flow[..., 0] = 4.0
    colours = flow_to_color(flow)
    assert np.array_equal(draw_flow(flow).image, add_legend(colours, 4.0).image)  # the legend by default
    with_arrows = draw_flow(flow, arrows=True, arrow_step=16, legend=False).image
    assert np.array_equal(with_arrows, draw_arrows(colours, flow, step=16, max_flow=4.0, coloured=False))
    assert not np.array_equal(with_arrows, colours)
    with pytest.raises(FlowcliError, match="arrow_step=0"):
        draw_flow(flow, arrows=True, arrow_step=0)


def test_draw_flows_share_one_scale():
    from flowcli.inference.visualize import draw_flows

    slow = np.zeros((8, 10, 2), np.float32)
    slow[..., 0] = 2.0
    fast = slow * 2  # the same direction, twice the magnitude
    pictures = draw_flows([slow, fast], legend=False)
    saturation = [1 - pixel.min() / pixel.max() for pixel in (d.image[0, 0].astype(float) for d in pictures)]
    assert saturation == pytest.approx([0.5, 1.0], abs=0.01)  # in ratio, not both fully saturated
    assert [d.max_flow for d in pictures] == [4.0, 4.0]
    alone = [draw_flows([f], legend=False)[0].image[0, 0].tolist() for f in (slow, fast)]
    assert alone == [[255, 0, 0], [255, 0, 0]]  # each on its own scale: both full, which hid the difference
    scaled = draw_flows([slow, fast], legend=False, max_flow=8.0)
    assert [d.image[0, 0].tolist() for d in scaled] == [[255, 191, 191], [255, 127, 127]]


def test_draw_flows_wants_one_output_per_flow(tmp_path):
    from flowcli.inference.visualize import draw_flows

    flows = [np.zeros((8, 10, 2), np.float32)] * 2
    with pytest.raises(FlowcliError, match="2 flows but 1 outputs"):  # zip would draw one and say nothing
        draw_flows(flows, outputs=[tmp_path / "a.png"])
    assert not (tmp_path / "a.png").exists()


def test_draw_flows_writes_name_png_into_a_folder_and_refuses_to_overwrite(tmp_path):
    from flowcli.errors import OutputError
    from flowcli.inference.visualize import draw_flows
    from flowcli.io import read_image, write_flo

    for name, value in (("a", 1.0), ("b", 3.0)):
        write_flo(tmp_path / f"{name}.flo", np.full((8, 10, 2), value, np.float32))
    flows = [tmp_path / "a.flo", tmp_path / "b.flo"]
    drawn = draw_flows(flows, legend=False, output_dir=tmp_path / "pics")
    assert [d.output for d in drawn] == [str(tmp_path / "pics" / "a.png"), str(tmp_path / "pics" / "b.png")]
    assert np.array_equal(read_image(tmp_path / "pics" / "a.png"), drawn[0].image)
    with pytest.raises(OutputError, match=r"2 of the 2 pictures already exist \(a.png, b.png\); overwrite=True"):
        draw_flows(flows, output_dir=tmp_path / "pics")
    assert draw_flows(flows, output_dir=tmp_path / "pics", overwrite=True)[1].output.endswith("b.png")
    with pytest.raises(OutputError, match="is a file, expected a folder"):
        draw_flows(flows, output_dir=tmp_path / "a.flo")
    (tmp_path / "x").mkdir()
    write_flo(tmp_path / "x" / "a.flo", np.ones((8, 10, 2), np.float32))
    with pytest.raises(OutputError, match="would both be drawn as"):
        draw_flows([flows[0], tmp_path / "x" / "a.flo"], output_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_draw_flows_refuses_fields_of_different_sizes():
    from flowcli.inference.visualize import draw_flows

    with pytest.raises(ImageError, match="flow 2 is 4x5 but flow 1 is 8x10: flows drawn on one scale"):
        draw_flows([np.ones((8, 10, 2), np.float32), np.ones((4, 5, 2), np.float32)])


def test_draw_panel_with_a_given_flow_and_ground_truth_reports_the_epe():
    from flowcli.inference.visualize import draw_panel

    img = np.zeros((4, 5, 3), np.uint8)
    gt = np.zeros((4, 5, 2), np.float32)
    gt[..., 0] = 3.0
    gt[0, 0] = (np.nan, 0)  # unknown: left out of the EPE
    pred = np.zeros((4, 5, 2), np.float32)
    pred[..., 1] = 4.0  # error 5 px everywhere
    pred[0, 0] = (100, 0)
    drawing = draw_panel(img, img, flow=pred, gt=gt)
    assert drawing.epe == pytest.approx(5.0)
    from flowcli.viz_panel import labelled_panel

    assert np.array_equal(drawing.image, labelled_panel(img, img, pred, gt, epe=5.0).image)  # titled "EPE 5.00 px"
    with pytest.raises(FlowcliError, match="drawn as the prediction"):
        draw_panel(img, img, flow=pred, weights="random")
    with pytest.raises(ImageError, match="prediction is 4x4 but the images are 4x5"):
        draw_panel(img, img, flow=pred[:, :4])
