"""`flowcli visualize`: images checked against flowcli.viz, and every bad input as one error line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowcli.io import read_flo, read_image, write_flo
from flowcli.viz import flow_to_color
from flowcli.viz_arrows import draw_arrows
from flowcli.viz_panel import labelled_panel
from flowcli.viz_text import add_legend


def flow_field(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, size=(height, width, 2)).astype(np.float32)


# -- outputs ------------------------------------------------------------------------------------------

def test_visualize_flo_writes_a_png_of_its_size(run_cli, tmp_path):
    flow = flow_field(48, 40)
    write_flo(tmp_path / "f.flo", flow)
    result = run_cli("visualize", tmp_path / "f.flo", "-o", tmp_path / "f.png", "--no-legend")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {tmp_path / 'f.png'}"
    image = read_image(tmp_path / "f.png")
    assert image.shape == (48, 40, 3)
    assert np.array_equal(image, flow_to_color(flow))

    result = run_cli("visualize", tmp_path / "f.flo", "-o", tmp_path / "g.png", "--max-flow", "100", "--no-legend")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_image(tmp_path / "g.png"), flow_to_color(flow, max_flow=100.0))


def test_visualize_draws_the_legend_by_default_and_arrows_when_asked(run_cli, tmp_path):
    flow = np.zeros((96, 128, 2), np.float32)
    flow[..., 0] = 6.0
    write_flo(tmp_path / "f.flo", flow)
    assert run_cli("visualize", tmp_path / "f.flo", "-o", tmp_path / "f.png").exit_code == 0
    assert np.array_equal(read_image(tmp_path / "f.png"), add_legend(flow_to_color(flow), 6.0).image)
    result = run_cli("visualize", tmp_path / "f.flo", "-o", tmp_path / "a.png", "--arrows", "--arrow-step", "16",
                     "--arrow-scale", "1.5", "--no-legend")
    assert result.exit_code == 0, result.output
    expected = draw_arrows(flow_to_color(flow), flow, step=16, scale=1.5, coloured=False)
    assert np.array_equal(read_image(tmp_path / "a.png"), expected)
    ink = (read_image(tmp_path / "a.png") != flow_to_color(flow)).any(axis=-1)
    assert ink[8, 9:17].all() and not ink[8, :7].any()  # 9 px to the right of the first start, none left of it


def test_visualize_several_flows_writes_a_folder_on_one_scale(run_cli, tmp_path):
    gt = np.zeros((48, 64, 2), np.float32)
    gt[..., 1] = 8.0
    pred = gt / 2  # the same direction at half the speed
    write_flo(tmp_path / "gt.flo", gt)
    write_flo(tmp_path / "pred.flo", pred)
    result = run_cli("visualize", tmp_path / "gt.flo", tmp_path / "pred.flo", "-o", tmp_path / "pics", "--no-legend")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (f"wrote 2 pictures to {tmp_path / 'pics'} (gt.png, pred.png), one colour scale: "
                                     "full saturation at 8.00 px")
    gt_png, pred_png = (read_image(tmp_path / "pics" / n).astype(float) for n in ("gt.png", "pred.png"))
    saturation = [1 - p[0, 0].min() / p[0, 0].max() for p in (gt_png, pred_png)]
    assert saturation == pytest.approx([1.0, 0.5], abs=0.01)  # in ratio 2:1, not both fully saturated
    assert np.array_equal(pred_png, flow_to_color(pred, max_flow=8.0))

    before = {n: (tmp_path / "pics" / n).read_bytes() for n in ("gt.png", "pred.png")}
    result = run_cli("visualize", tmp_path / "gt.flo", tmp_path / "pred.flo", "-o", tmp_path / "pics")
    assert result.exit_code == 1
    assert "2 of the 2 pictures already exist (gt.png, pred.png); --overwrite replaces them" in result.stderr
    assert {n: (tmp_path / "pics" / n).read_bytes() for n in before} == before  # untouched
    result = run_cli("visualize", tmp_path / "gt.flo", tmp_path / "pred.flo", "-o", tmp_path / "pics",
                     "--overwrite", "--max-flow", "16")
    assert result.exit_code == 0, result.output
    assert "full saturation at 16.00 px" in result.stdout
    assert (tmp_path / "pics" / "gt.png").read_bytes() != before["gt.png"]


def test_visualize_pair_with_gt_writes_the_titled_panel(run_cli, make_pair, tmp_path):
    a, b = make_pair(64, 80)
    gt = np.zeros((64, 80, 2), np.float32)
    gt[..., 0], gt[..., 1] = 3.0, -2.0
    pred = gt.copy()
    pred[..., 0] += 0.6
    pred[..., 1] += 0.8  # EPE exactly 1
    write_flo(tmp_path / "gt.flo", gt)
    write_flo(tmp_path / "pred.flo", pred)
    result = run_cli("visualize", tmp_path / "pred.flo", "--pair", a, b, "--gt", tmp_path / "gt.flo",
                     "-o", tmp_path / "panel.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {tmp_path / 'panel.png'} (EPE 1.000 px)"
    image = read_image(tmp_path / "panel.png")
    expected = labelled_panel(read_image(a), read_image(b), pred, gt, epe=1.0)
    assert np.array_equal(image, expected.image)
    assert len(expected.tiles) == 5

    result = run_cli("visualize", tmp_path / "pred.flo", "--pair", a, b, "-o", tmp_path / "three.png")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_image(tmp_path / "three.png"), labelled_panel(read_image(a), read_image(b), pred).image)

    # --max-flow sets the panel's colour scale too; --arrows draws over image 1
    result = run_cli("visualize", tmp_path / "pred.flo", "--pair", a, b, "--gt", tmp_path / "gt.flo",
                     "--max-flow", "20", "--arrows", "-o", tmp_path / "scaled.png")
    assert result.exit_code == 0, result.output
    scaled = read_image(tmp_path / "scaled.png")
    assert np.array_equal(scaled, labelled_panel(read_image(a), read_image(b), pred, gt, max_flow=20.0, epe=1.0,
                                                 arrows=True).image)
    assert not np.array_equal(scaled, image)


def test_visualize_the_real_flying_chairs_flow(run_cli, shared_fixtures, tmp_path):
    result = run_cli("visualize", shared_fixtures / "00001_flow.flo", "-o", tmp_path / "chairs.png", "--no-legend")
    assert result.exit_code == 0, result.output
    image = read_image(tmp_path / "chairs.png")
    assert image.shape == (50, 50, 3)
    assert np.array_equal(image, flow_to_color(read_flo(shared_fixtures / "00001_flow.flo")))
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # a real, varied field
    result = run_cli("visualize", shared_fixtures / "00001_flow.flo", "-o", tmp_path / "legend.png")
    legend = read_image(tmp_path / "legend.png")  # too small to cover: the legend goes below the field
    assert legend.shape[0] > 50 and np.array_equal(legend[:50, :50], image)


def test_visualize_the_real_pair_with_the_shipped_weights_tta_and_refine(run_cli, shared_fixtures, tmp_path):
    """The 50x50 pair goes through the upscaling path; the EPE printed is that of `flowcli eval`."""
    files = [shared_fixtures / f"00001_{n}" for n in ("img1.ppm", "img2.ppm", "flow.flo")]
    printed = {}
    for extra in ([], ["--tta", "hflip", "--refine", "2"]):
        picture = tmp_path / f"p{len(extra)}.png"
        result = run_cli("visualize", "--pair", files[0], files[1], "--gt", files[2], *extra, "-o", picture)
        assert result.exit_code == 0, result.output
        printed[len(extra)] = float(result.stdout.split("EPE ")[1].split()[0])
        height, width = read_image(picture).shape[:2]
        assert height > 100 and (width - 16) % 5 == 0 and (width - 16) // 5 >= 100  # 50 px tiles, enlarged
    # measured once (flowcli eval, torch 2.13 CPU): 0.784 with the defaults, 0.570 with both options
    assert printed[0] == pytest.approx(0.784, abs=0.05) and printed[4] == pytest.approx(0.570, abs=0.05)


def test_visualize_pair_predicts_with_the_model(run_cli, make_pair, tmp_path):
    from flowcli.inference.predict import estimate_flow

    a, b = make_pair(64, 80)
    truth = flow_field(64, 80)
    write_flo(tmp_path / "gt.flo", truth)
    result = run_cli("visualize", "--pair", a, b, "--gt", tmp_path / "gt.flo", "--weights", "random",
                     "-o", tmp_path / "panel.png")
    assert result.exit_code == 0, result.output
    pred = estimate_flow(a, b, weights="random")
    epe = float(np.linalg.norm(pred - truth, axis=2).mean())
    assert result.stdout.strip() == f"wrote {tmp_path / 'panel.png'} (EPE {epe:.3f} px)"
    expected = labelled_panel(read_image(a), read_image(b), pred, truth, epe=epe).image
    assert np.array_equal(read_image(tmp_path / "panel.png"), expected)


# -- bad input: exit 1, one line on stderr, no output -------------------------------------------------

def _visualize_case(case: str, tmp_path: Path, make_pair) -> tuple[list, list[str]]:
    out = tmp_path / "out.png"
    good = tmp_path / "good.flo"
    write_flo(good, flow_field(64, 80))
    if case == "wrong magic":
        (tmp_path / "magic.flo").write_bytes(b"PIEX" + good.read_bytes()[4:])
        return ["visualize", tmp_path / "magic.flo", "-o", out], ["magic.flo", "not a .flo file"]
    if case == "truncated flo":
        (tmp_path / "cut.flo").write_bytes(good.read_bytes()[:-5])
        return ["visualize", tmp_path / "cut.flo", "-o", out], ["cut.flo", "truncated", "for 64x80"]
    if case == "missing flo":
        return ["visualize", tmp_path / "gone.flo", "-o", out], ["gone.flo", "no such file"]
    if case == "directory as flo":
        (tmp_path / "dir.flo").mkdir()
        return ["visualize", tmp_path / "dir.flo", "-o", out], ["dir.flo", "is a directory"]
    if case == "output folder missing":
        return ["visualize", good, "-o", tmp_path / "nowhere" / "out.png"], ["nowhere", "does not exist"]
    if case == "output is a folder":
        (tmp_path / "out.png").mkdir()
        return ["visualize", good, "-o", tmp_path / "out.png"], ["out.png", "is a folder"]
    if case == "output not png":
        return ["visualize", good, "-o", tmp_path / "out.jpg"], ["out.jpg", ".png"]
    if case == "nothing to draw":
        return ["visualize", "-o", out], ["give a .flo file"]
    if case == "max flow zero":
        return ["visualize", good, "-o", out, "--max-flow", "0"], ["--max-flow 0", "positive"]
    if case == "max flow negative":
        return ["visualize", good, "-o", out, "--max-flow", "-2.5"], ["--max-flow -2.5", "positive"]
    if case == "gt without a pair":
        return ["visualize", good, "--gt", good, "-o", out], ["--gt is for a panel", "add --pair"]
    if case == "model options without a pair":
        return ["visualize", good, "--weights", "random", "--dtype", "fp32", "--tta", "hflip", "-o", out], \
            ["--weights, --dtype, --tta are for a panel", "add --pair"]
    if case == "arrow step zero":
        return ["visualize", good, "--arrows", "--arrow-step", "0", "-o", out], ["--arrow-step 0", "at least 1"]
    if case == "arrow scale negative":
        return ["visualize", good, "--arrows", "--arrow-scale", "-2", "-o", out], ["--arrow-scale -2", "positive"]
    if case == "arrow options without arrows":
        return ["visualize", good, "--arrow-step", "8", "--arrow-scale", "2", "-o", out], \
            ["--arrow-step, --arrow-scale are for the arrows", "add --arrows"]
    if case == "output folder is a file":
        (tmp_path / "taken").write_text("a file")
        return ["visualize", good, good, "-o", tmp_path / "taken"], ["taken: is a file, expected a folder"]
    if case == "several flows into one png":
        return ["visualize", good, good, "-o", tmp_path / "one.png"], ["one.png: several flows are drawn into a folder"]
    if case == "flows of different sizes":
        write_flo(tmp_path / "small.flo", flow_field(32, 40))
        return ["visualize", good, tmp_path / "small.flo", "-o", tmp_path / "pics"], \
            ["small.flo is 32x40", "good.flo is 64x80", "one size"]
    if case == "flows of one name":
        (tmp_path / "sub").mkdir()
        write_flo(tmp_path / "sub" / "good.flo", flow_field(64, 80))
        return ["visualize", good, tmp_path / "sub" / "good.flo", "-o", tmp_path / "pics"], \
            ["would both be drawn as", "good.png"]
    a, b = make_pair(64, 80)
    if case == "pair with two flows":
        return ["visualize", good, good, "--pair", a, b, "-o", out], ["--pair draws one FLOW", "got 2"]
    if case == "flo and model options with a pair":
        return ["visualize", good, "--pair", a, b, "--weights", "random", "--refine", "2", "-o", out], \
            ["good.flo is drawn as the prediction", "--weights, --refine would do nothing"]
    if case == "pair predicted in fp16 on the CPU":  # the precision reaches the predictor
        return ["visualize", "--pair", a, b, "--device", "cpu", "--dtype", "fp16", "-o", out], \
            ["--dtype fp16 needs --device cuda"]
    if case == "pair with max flow zero":
        return ["visualize", good, "--pair", a, b, "--max-flow", "0", "-o", out], ["--max-flow 0", "positive"]
    if case == "pair of different sizes":
        c, _ = make_pair(72, 80, name="c")
        return ["visualize", good, "--pair", a, c, "-o", out], ["is 64x80", "is 72x80"]
    if case == "flo of another size":
        write_flo(tmp_path / "small.flo", flow_field(32, 40))
        return ["visualize", tmp_path / "small.flo", "--pair", a, b, "-o", out], \
            ["prediction is 32x40", "images are 64x80"]
    if case == "gt of another size":
        write_flo(tmp_path / "gt.flo", flow_field(64, 96))
        return ["visualize", good, "--pair", a, b, "--gt", tmp_path / "gt.flo", "-o", out], \
            ["ground truth is 64x96", "images are 64x80"]
    if case == "gt truncated":
        (tmp_path / "gt.flo").write_bytes(good.read_bytes()[:100])
        return ["visualize", good, "--pair", a, b, "--gt", tmp_path / "gt.flo", "-o", out], \
            ["gt.flo", "truncated"]
    raise AssertionError(case)


VISUALIZE_CASES = ["wrong magic", "truncated flo", "missing flo", "directory as flo", "output folder missing",
                   "output is a folder", "output not png", "nothing to draw", "max flow zero", "max flow negative",
                   "gt without a pair", "model options without a pair", "flo and model options with a pair",
                   "pair predicted in fp16 on the CPU",
                   "pair with max flow zero", "pair of different sizes", "flo of another size",
                   "gt of another size", "gt truncated", "arrow step zero", "arrow scale negative",
                   "arrow options without arrows", "output folder is a file", "flows of different sizes",
                   "flows of one name", "pair with two flows", "several flows into one png"]


@pytest.mark.parametrize("case", VISUALIZE_CASES)
def test_visualize_bad_input_fails_cleanly(run_cli, make_pair, tmp_path, case, assert_clean_failure, visible_files):
    args, words = _visualize_case(case, tmp_path, make_pair)
    before = visible_files(tmp_path)
    result = run_cli(*args)
    assert_clean_failure(result, *words, before=before, folder=tmp_path)


def test_an_unwritable_output_folder_is_refused_before_any_work(run_cli, make_pair, tmp_path, monkeypatch, assert_clean_failure, visible_files):
    import os

    import flowcli.inference.predict

    a, b = make_pair(64, 80)
    write_flo(tmp_path / "f.flo", flow_field(64, 80))
    readable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if mode & os.W_OK else readable(path, mode, **kw))
    monkeypatch.setattr(flowcli.inference.predict, "load_predictor", lambda *a, **k: pytest.fail("model loaded"))
    before = visible_files(tmp_path)
    for args in ([tmp_path / "f.flo"], ["--pair", a, b, "--weights", "random"]):
        result = run_cli("visualize", *args, "-o", tmp_path / "out.png")
        assert_clean_failure(result, "out.png", "is not writable", before=before, folder=tmp_path)
