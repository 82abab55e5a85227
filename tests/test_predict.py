"""The prediction API: estimate_flow, predict_file and predict_folder with their typed results."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flowcli.inference.predict as predict
from flowcli.errors import FlowcliError, FlowFormatError, ImageError, OutputError
from flowcli.inference.predict import PredictFolderResult, PredictResult, estimate_flow, predict_file, predict_folder
from flowcli.io import read_flo, read_image


def test_predict_file_writes_the_flow_and_returns_its_figures(make_pair, tmp_path):
    a, b = make_pair(64, 96)
    result = predict_file(a, b, tmp_path / "f.flo", weights="random")
    flow = read_flo(tmp_path / "f.flo")
    np.testing.assert_allclose(flow, estimate_flow(read_image(a), read_image(b), weights="random"), atol=1e-5)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    assert isinstance(result, PredictResult)
    assert (result.output, result.height, result.width, result.warnings) == (str(tmp_path / "f.flo"), 64, 96, ())
    assert result.mean_flow == pytest.approx(magnitude.mean(), rel=1e-5)
    assert result.max_flow == pytest.approx(magnitude.max(), rel=1e-5)
    assert json.loads(result.to_json())["width"] == 96


def test_predict_file_checks_everything_before_loading_a_model(make_pair, tmp_path, monkeypatch):
    a, b = make_pair(64, 80)
    monkeypatch.setattr(predict, "load_predictor", lambda *args, **kw: pytest.fail("model loaded"))
    with pytest.raises(FlowFormatError, match="must end in .flo or .png"):
        predict_file(a, b, tmp_path / "f.tif", weights="random")
    with pytest.raises(OutputError, match="does not exist"):
        predict_file(a, b, tmp_path / "no" / "f.flo", weights="random")
    with pytest.raises(FlowcliError, match="max_side=63: must be at least 64"):
        predict_file(a, b, tmp_path / "f.flo", weights="random", max_side=63)
    assert sorted(p.name for p in tmp_path.iterdir()) == [a.name, b.name]


def test_predict_folder_returns_a_typed_result_and_applies_max_side(make_pair, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    a, b = make_pair(64, 160, folder=folder, name="x")
    result = predict_folder(folder, tmp_path / "out", weights="random", max_side=80, fmt="flo")
    assert isinstance(result, PredictFolderResult)
    assert (result.pairs, result.out_dir) == (1, str(tmp_path / "out"))
    assert result.pairs_per_s == pytest.approx(result.pairs / result.seconds)
    assert result.warnings == ("max_side=80: the network sees 64x80 frames, and under 128 px its flow can be "
                               "worse than zero flow (max_side=160 keeps the full size)",)
    assert set(json.loads(result.to_json())) == {"pairs", "seconds", "pairs_per_s", "out_dir", "warnings"}
    np.testing.assert_allclose(read_flo(tmp_path / "out" / "x_flow.flo"),
                               estimate_flow(read_image(a), read_image(b), weights="random", max_side=80), atol=1e-5)


def test_predict_folder_finds_the_pairs_train_and_eval_find(make_pair, tmp_path):
    from flowcli.data.layouts import find_pairs
    from flowcli.inference.predict import layout_pairs

    folder = tmp_path / "pairs"
    folder.mkdir()
    make_pair(folder=folder, name="x")
    a, b = make_pair(folder=folder, name="y")
    a.rename(a.with_suffix(".PPM"))  # one camera's upper-case suffix beside the other's
    make_pair(folder=folder, name="z")[1].unlink()  # half a pair
    expected = [(s.id, s.img1, s.img2) for s in find_pairs(folder, layout="chairs", need_flow=False).samples]
    assert layout_pairs(folder) == expected and [p[0] for p in expected] == ["x", "y"]


def test_predict_folder_refuses_existing_flows_before_any_work(make_pair, tmp_path, monkeypatch):
    folder, out = tmp_path / "pairs", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for name in ("p", "q", "r", "s"):
        make_pair(64, 80, folder=folder, name=name)
    for name in ("q", "r", "s", "t"):
        (out / f"{name}_flow.png").write_bytes(b"mine")
    monkeypatch.setattr(predict, "load_predictor", lambda *args, **kw: pytest.fail("model loaded"))
    with pytest.raises(OutputError) as info:
        predict_folder(folder, out, weights="random", fmt="png")
    assert str(info.value) == (f"{out}: 3 of the 4 flows already exist (q_flow.png, r_flow.png, s_flow.png); "
                               "overwrite=True replaces them")
    assert all((out / f"{n}_flow.png").read_bytes() == b"mine" for n in "qrst")


def test_estimate_flow_refuses_frames_that_are_not_uint8_rgb_even_when_shrinking():
    frame = np.zeros((64, 200, 3), np.uint8)
    with pytest.raises(ImageError, match=r"image 2: expected an HxWx3 uint8 image, got \(64, 200, 3\) float32"):
        estimate_flow(frame, frame.astype(np.float32), weights="random", max_side=100)
    with pytest.raises(ImageError, match="image 1 is 64x200 but image 2 is 64x100"):
        estimate_flow(frame, frame[:, :100], weights="random")
