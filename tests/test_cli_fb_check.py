"""`flowcli predict --fb-check` and `flowcli eval --fb-check`: files checked against the Python API
and the check computed here from the API's two flows; bad input as one error line before any work."""

from __future__ import annotations

import numpy as np
import pytest

from flowcli.io import read_flo, read_image, read_mask


@pytest.fixture(scope="module")
def checked_for():
    """`checked_for(a, b)`: the API's CheckedFlow for two image files, seeded random weights."""
    from flowcli.inference.engine import load_predictor
    from flowcli.inference.predict import estimate_flow

    predictor = load_predictor("random")
    return lambda a, b: estimate_flow(read_image(a), read_image(b), predictor=predictor, fb_check=True)


def _png(path):
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def test_predict_fb_check_writes_mask_confidence_and_unknown_flow(run_cli, make_pair, tmp_path, checked_for):
    a, b = make_pair(64, 80, shift=(0, 6))  # 6 px right: the first columns of image 1 have no match
    out, mask, conf = tmp_path / "f.flo", tmp_path / "m.png", tmp_path / "c.png"
    result = run_cli("predict", a, b, "-o", out, "--weights", "random", "--mask", mask, "--confidence", conf,
                     "--mask-invalid")
    assert result.exit_code == 0, result.output
    expected = checked_for(a, b)
    occluded = _png(mask)
    assert occluded.dtype == np.uint8 and set(np.unique(occluded)) <= {0, 255}
    assert np.array_equal(occluded == 255, expected.occluded) and 0 < expected.occluded.mean() < 1
    confidence = _png(conf)
    assert confidence.dtype == np.uint16  # 16-bit, 65535 = 1.0
    assert np.abs(confidence / 65535 - expected.confidence).max() <= 0.5 / 65535 + 1e-6
    assert len(np.unique(confidence)) > 256  # finer than 8 bits
    flow = read_flo(out)
    assert (flow[expected.occluded] == np.float32(1e10)).all()
    assert np.allclose(flow[~expected.occluded], expected.flow[~expected.occluded], atol=1e-4)
    share = f"{100 * expected.occluded.mean():.1f}% of pixels occluded"
    assert share in result.stdout and str(mask) in result.stdout


def test_mask_implies_fb_check_and_the_flow_keeps_its_values_without_mask_invalid(run_cli, make_pair, tmp_path, checked_for):
    a, b = make_pair(64, 80)
    result = run_cli("predict", a, b, "-o", tmp_path / "f.flo", "--weights", "random", "--mask", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    expected = checked_for(a, b)
    assert np.allclose(read_flo(tmp_path / "f.flo"), expected.flow, atol=1e-4)
    assert np.array_equal(read_mask(tmp_path / "m.png"), expected.occluded)
    assert not (tmp_path / "c.png").exists()


def test_predict_folder_with_fb_check_writes_occ_and_conf_per_pair(run_cli, make_pair, tmp_path, checked_for, assert_clean_failure, visible_files):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name, shift in (("x", (1, 5)), ("y", (3, -2))):
        make_pair(64, 80, shift=shift, folder=pairs, name=name)
    result = run_cli("predict", pairs, "-o", tmp_path / "flows", "--weights", "random", "--fb-check")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == [
        "x_conf.png", "x_flow.flo", "x_occ.png", "y_conf.png", "y_flow.flo", "y_occ.png"]
    for name in ("x", "y"):
        expected = checked_for(pairs / f"{name}_img1.ppm", pairs / f"{name}_img2.ppm")
        assert np.array_equal(read_mask(tmp_path / "flows" / f"{name}_occ.png"), expected.occluded)
        assert np.allclose(_png(tmp_path / "flows" / f"{name}_conf.png") / 65535, expected.confidence, atol=1e-4)
    # a mask already there is not replaced without --overwrite, even when the flows are gone
    for flow in (tmp_path / "flows").glob("*_flow.flo"):
        flow.unlink()
    before = visible_files(tmp_path / "flows")
    again = run_cli("predict", pairs, "-o", tmp_path / "flows", "--weights", "random", "--fb-check")
    assert_clean_failure(again, "x_conf.png", "overwrite", before=before, folder=tmp_path / "flows")


@pytest.mark.parametrize("case", ["mask folder missing", "mask not png", "confidence is a folder",
                                  "mask-invalid with a png flow", "mask in folder mode", "mask is the flow picture",
                                  "confidence is the mask"])
def test_fb_check_bad_input_fails_before_any_work(run_cli, make_pair, tmp_path, monkeypatch, case, assert_clean_failure, visible_files):
    import flowcli.inference.predict

    monkeypatch.setattr(flowcli.inference.predict, "load_predictor", lambda *a, **k: pytest.fail("model loaded"))
    a, b = make_pair(64, 80)
    out = tmp_path / "f.flo"
    args, words = {
        "mask folder missing": (["--mask", tmp_path / "nowhere" / "m.png"], ["nowhere", "does not exist"]),
        "mask not png": (["--mask", tmp_path / "m.jpg"], ["--mask", "m.jpg", ".png"]),
        "confidence is a folder": (["--confidence", tmp_path], [str(tmp_path), "is a folder"]),
        "mask-invalid with a png flow": (["--mask-invalid"], ["--mask-invalid", ".flo"]),
        "mask in folder mode": (["--mask", tmp_path / "m.png"], ["--mask", "<id>_occ.png"]),
        "mask is the flow picture": (["--mask", tmp_path / "f.png"], ["--mask", "f.png", "the same file as --output"]),
        "confidence is the mask": (["--mask", tmp_path / "m.png", "--confidence", tmp_path / "m.png"],
                                   ["--confidence", "the same file as --mask"]),
    }[case]
    png_flow = case in ("mask-invalid with a png flow", "mask is the flow picture")
    inputs = [a, b, "-o", tmp_path / "f.png" if png_flow else out]
    if case == "mask in folder mode":
        inputs = [tmp_path, "-o", tmp_path / "flows"]
    before = visible_files(tmp_path)
    result = run_cli("predict", *inputs, *args, "--weights", "random")
    assert_clean_failure(result, *words, before=before, folder=tmp_path)


def test_eval_reports_noc_epe_and_the_masks_scores_where_occ_files_exist(run_cli, tmp_path):
    """Two generated pairs with their <id>_occ.png; noc EPE and precision / recall / F1 recomputed here
    from the written files and the API's flows."""
    import json

    import torch

    from flowcli.data.scenes import SynthConfig

    from flowcli.data.synth import write_dataset
    from flowcli.inference.engine import load_predictor
    from flowcli.inference.occlusion import both_directions, fb_check
    from flowcli.io import read_flow

    data = tmp_path / "data"
    write_dataset(data, count=2, seed=3, config=SynthConfig(height=64, width=96, texture_count=12, texture_size=64,
                                                            shape_count=32, shape_size=64))
    result = run_cli("eval", data, "--split", "all", "--weights", "random", "--fb-check", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    predictor = load_predictor("random")
    errors, visible, tp, fp, fn = 0.0, 0, 0, 0, 0
    for name in ("00001", "00002"):
        img1, img2 = (torch.from_numpy(read_image(data / f"{name}_{k}.ppm")).permute(2, 0, 1)[None].float() / 255
                      for k in ("img1", "img2"))
        flows = predictor(*both_directions(img1, img2))
        predicted = fb_check(flows[:1], flows[1:])[0][0].numpy()
        truth = read_mask(data / f"{name}_occ.png")
        gt = read_flow(data / f"{name}_flow.flo")[0]
        epe = np.linalg.norm(flows[0].permute(1, 2, 0).numpy() - gt, axis=-1)
        errors, visible = errors + epe[~truth].sum(), visible + (~truth).sum()
        tp, fp, fn = tp + (predicted & truth).sum(), fp + (predicted & ~truth).sum(), fn + (~predicted & truth).sum()
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert report["epe_noc"] == pytest.approx(errors / visible, rel=1e-4)
    assert report["occlusion_check"]["precision"] == pytest.approx(precision, rel=1e-6)
    assert report["occlusion_check"]["recall"] == pytest.approx(recall, rel=1e-6)
    assert report["occlusion_check"]["f1"] == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-6)
    assert f"{report['epe_noc']:.3f} px" in result.stdout and "mask precision/recall/F1" in result.stdout
    plain = run_cli("eval", data, "--split", "all", "--weights", "random")  # without the check: noc only
    assert "EPE noc" in plain.stdout and "precision" not in plain.stdout
    asked = run_cli("eval", data, "--split", "all", "--weights", "random", "--fb-check", "--metric", "epe")
    assert "mask precision/recall/F1" in asked.stdout  # an asked-for check is shown with any --metric
