"""flowcli.viz_panel: titles over the tiles, the tiles untouched, legend and colour bar below."""

from __future__ import annotations

import numpy as np

from flowcli.viz import error_to_color, flow_to_color, panel_tiles
from flowcli.viz_panel import labelled_panel
from flowcli.viz_text import colour_bar, font_size, load_font


def pair(height: int = 96, width: int = 128):
    rng = np.random.default_rng(1)
    img1 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    img2 = np.full((height, width, 3), 240, np.uint8)  # a bright tile: titles sit on their own strip
    gt = np.zeros((height, width, 2), np.float32)
    gt[..., 0] = np.linspace(0, 8, width)[None, :]
    pred = gt.copy()
    pred[: height // 2, :, 1] += 3.0  # error 3 px in the top half
    return img1, img2, gt, pred


def ink(image: np.ndarray) -> np.ndarray:
    return (image < 128).all(axis=-1)


def test_tiles_are_the_panel_tiles_and_titles_sit_only_above_them():
    img1, img2, gt, pred = pair()
    drawn = labelled_panel(img1, img2, pred, gt, epe=1.5)
    tiles = panel_tiles(img1, img2, pred, gt).tiles
    top = drawn.tiles[0].top
    assert top > 0 and drawn.zoom == 1
    for box, tile in zip(drawn.tiles, tiles):
        assert np.array_equal(drawn.image[box.top:box.top + box.height, box.left:box.left + box.width], tile)
    strip = drawn.image[:top]
    written = ink(strip)
    for box in drawn.tiles:  # every tile has its title, centred over it
        cols = np.nonzero(written[:, box.left:box.left + box.width].any(axis=0))[0]
        assert cols.size and abs((cols.min() + cols.max()) / 2 - box.width / 2) <= 4
    over_tiles = np.zeros(strip.shape[1], bool)
    for box in drawn.tiles:
        over_tiles[box.left:box.left + box.width] = True
    assert (strip[:, ~over_tiles] == 255).all()  # nothing over the gaps
    # only the error title says the EPE: a different EPE changes the strip over the error map alone
    other = labelled_panel(img1, img2, pred, gt, epe=12.25).image[:top]
    differs = np.nonzero((other != strip).any(axis=-1).any(axis=0))[0]
    assert differs.min() >= drawn.tiles[4].left


def test_the_colour_bar_under_the_error_map_matches_error_to_color_at_its_ticks():
    img1, img2, gt, pred = pair()
    drawn = labelled_panel(img1, img2, pred, gt, epe=1.5)
    error_top = float(np.linalg.norm(gt - pred, axis=2).max())  # 3 px: error_to_color's own top
    box = drawn.tiles[4]
    bar_top, bar_left = drawn.bar_at
    assert bar_left == box.left and bar_top >= box.top + box.height  # under the error map
    expected_bar = colour_bar(box.width, error_top, load_font(font_size(96, 128)))
    assert np.array_equal(drawn.image[bar_top:bar_top + expected_bar.image.shape[0], bar_left:bar_left + box.width],
                          expected_bar.image)
    rows = slice(bar_top + drawn.bar.bar_rows.start, bar_top + drawn.bar.bar_rows.stop)
    for column, value in drawn.bar.ticks:
        expected = error_to_color(np.array([[value]]), max_error=error_top)[0, 0]
        assert (drawn.image[rows, bar_left + column] == expected).all()
    assert [v for _, v in drawn.bar.ticks][-1] <= error_top


def test_the_legend_sits_under_the_flow_tiles_and_can_be_left_out():
    img1, img2, gt, pred = pair()
    drawn = labelled_panel(img1, img2, pred, gt)
    legend = drawn.legend_at
    gt_box, pred_box = drawn.tiles[2], drawn.tiles[3]
    assert legend.top >= gt_box.top + gt_box.height
    assert legend.left >= gt_box.left and legend.left + legend.width <= pred_box.left + pred_box.width
    assert drawn.max_flow == np.float32(8.0)  # the ground truth's maximum, shared with the prediction
    bare = labelled_panel(img1, img2, pred, gt, legend=False)
    assert bare.legend_at is None
    region = (slice(legend.top, legend.top + legend.height), slice(legend.left, legend.left + legend.width))
    assert (bare.image[region] == 255).all() and not (drawn.image[region] == 255).all()


def test_arrows_change_image_1_only():
    img1, img2, gt, pred = pair()
    plain = labelled_panel(img1, img2, pred, gt).image
    arrows = labelled_panel(img1, img2, pred, gt, arrows=True, arrow_step=16).image
    rows, cols = np.nonzero((plain != arrows).any(axis=-1))
    box = labelled_panel(img1, img2, pred, gt).tiles[0]
    assert rows.size and rows.min() >= box.top and rows.max() < box.top + box.height
    assert cols.max() < box.left + box.width


def test_small_tiles_are_enlarged_so_their_titles_fit():
    img1, img2, gt, pred = pair(20, 24)
    drawn = labelled_panel(img1, img2, pred, gt, epe=0.5)
    assert drawn.zoom >= 4
    box = drawn.tiles[3]
    tile = flow_to_color(pred, max_flow=drawn.max_flow)
    enlarged = np.repeat(np.repeat(tile, drawn.zoom, 0), drawn.zoom, 1)
    assert np.array_equal(drawn.image[box.top:box.top + box.height, box.left:box.left + box.width], enlarged)
    strip = ink(drawn.image[:box.top])
    for box in drawn.tiles:
        assert strip[:, box.left:box.left + box.width].any()
        assert not strip[:, box.left + box.width:box.left + box.width + 4].any()  # no title runs into a gap


def test_without_ground_truth_three_titled_tiles_and_the_legend():
    img1, img2, _, pred = pair()
    drawn = labelled_panel(img1, img2, pred)
    assert len(drawn.tiles) == 3 and drawn.bar is None
    assert drawn.legend_at.left >= drawn.tiles[2].left
