"""ONNX export (flowcli.inference.export, `flowcli export`): parity with PyTorch, dynamic shapes, the
model card in the metadata, fp16, and bad input. A tiny BatchNorm model keeps each export to seconds."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
pytest.importorskip("onnxscript", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
onnx = pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install -e ".[onnx]")')

import torch  # noqa: E402

SIZES = ((64, 128), (128, 192))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, bn_model):
    from flowcli.checkpoint import save_weights

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(path, bn_model(width=0.125))  # 8-32 channels
    return path


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    from flowcli.inference.export import export_onnx

    output = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(output, weights=tiny_weights, check_sizes=SIZES), output


def session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_body(weights):
    """flow2 of the unfolded eval-mode model from the weights file: what the export must reproduce."""
    from flowcli.checkpoint import load_model

    model = load_model(weights)
    return lambda x: model.pyramid(x)[0].detach()


def test_parity_on_random_and_generated_pairs_at_two_sizes(exported):
    result, output = exported
    assert {(c.source, c.height, c.width) for c in result.parity} == {
        (s, h, w) for s in ("random", "generated") for h, w in SIZES}
    assert all(0 <= c.max_abs_px <= 1e-3 for c in result.parity)
    assert result.tolerance_px == 1e-3 and output.stat().st_size == result.bytes


def test_one_file_runs_two_sizes_and_batches_as_pytorch_does(exported, tiny_weights):
    _, output = exported
    run, expected = session(output), torch_body(tiny_weights)
    generator = torch.Generator().manual_seed(3)
    for batch, height, width in ((1, 64, 128), (2, 192, 256)):
        x = torch.rand(batch, 6, height, width, generator=generator) - 0.4
        got = run.run(["flow2"], {"pair": x.numpy()})[0]
        want = expected(x).numpy()
        assert got.shape == (batch, 2, height // 4, width // 4)
        assert np.abs(want).max() * 20 > 0.5  # a real flow, not near-zero heads: the check means something
        assert np.abs(got - want).max() * 20 < 1e-3  # px


def test_metadata_is_the_model_card(exported, tiny_weights):
    import flowcli
    from flowcli.model import RGB_MEAN, ModelConfig

    _, output = exported
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert meta["arch"] == "flownets" and meta["width"] == "0.125" and meta["flow_scale"] == "20"
    assert meta["stride"] == "64" and meta["min_side"] == "64" and meta["dtype"] == "fp32"
    assert meta["flowcli_version"] == flowcli.__version__
    assert meta["weights_sha256"] == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert ModelConfig.from_json(meta["config"]) == ModelConfig(width=0.125, batch_norm=True)
    assert json.loads(meta["rgb_mean"]) == pytest.approx(RGB_MEAN)
    for key in ("input", "pad_to", "output"):
        assert meta[key]
    assert "multiples of 64" in meta["pad_to"] and "edge replication" in meta["pad_to"]
    # a bilinear network: FlowNet's finest level, named as the metadata names it
    assert [o.name for o in onnx.load(str(output)).graph.output] == ["flow2"] and meta["output"].startswith("flow2: (B, 2, H/4")


def test_readme_recipe_with_numpy_and_onnxruntime_gives_flowclis_flow(exported, tiny_weights, make_pair):
    """The pre/post-processing README tells other runtimes, done in numpy, on a 70x100 pair (padded to
    128x128), equals flowcli's network-only output."""
    from flowcli.inference.engine import load_predictor
    from flowcli.io import read_image

    _, output = exported
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    img1, img2 = (read_image(p) for p in make_pair(height=70, width=100, shift=(3, -4)))
    mean = np.array(json.loads(meta["rgb_mean"]), np.float32)
    x = np.concatenate([img1 / np.float32(255) - mean, img2 / np.float32(255) - mean], -1).astype(np.float32)
    pad_h, pad_w = -70 % 64, -100 % 64
    top, left = pad_h // 2, pad_w // 2
    x = np.pad(x, ((top, pad_h - top), (left, pad_w - left), (0, 0)), mode="edge")
    flow2 = session(output).run(["flow2"], {"pair": x.transpose(2, 0, 1)[None]})[0] * float(meta["flow_scale"])
    up = torch.nn.functional.interpolate(torch.from_numpy(flow2), scale_factor=4, mode="bilinear",
                                         align_corners=False)[0].numpy()
    flow = up[:, top:top + 70, left:left + 100].transpose(1, 2, 0)
    want = load_predictor(tiny_weights, device="cpu", refine=0, smooth=False).predict_numpy(img1, img2)
    assert np.abs(want).max() > 0.5
    assert np.abs(flow - want).max() < 1e-3


def test_fp16_export_from_the_cli(run_cli, tiny_weights, tmp_path):
    from flowcli.inference.export import TOLERANCE_PX

    output = tmp_path / "half.onnx"
    result = run_cli("export", "--format", "onnx", "-o", output, "--weights", tiny_weights, "--dtype", "fp16")
    assert result.exit_code == 0, result.output
    assert f"tolerance {TOLERANCE_PX['fp16']:g} px" in result.stdout and "fp16" in result.stdout
    model = onnx.load(str(output))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {p.key: p.value for p in model.metadata_props}["dtype"] == "fp16"
    x = torch.rand(1, 6, 128, 128, generator=torch.Generator().manual_seed(0)) - 0.4
    got = session(output).run(["flow2"], {"pair": x.half().numpy()})[0].astype(np.float32)
    want = torch_body(tiny_weights)(x).numpy()
    assert 0 < np.abs(got - want).max() * 20 <= TOLERANCE_PX["fp16"]  # fp16 rounding, within its tolerance


def test_parity_failure_writes_nothing(exported, tiny_weights, tmp_path, monkeypatch):
    from flowcli.errors import FlowcliError
    from flowcli.inference import export

    monkeypatch.setattr(export, "onnx_model", lambda *a, **k: onnx.load(str(exported[1])))  # no second export
    monkeypatch.setitem(export.TOLERANCE_PX, "fp32", 0.0)  # float rounding alone now fails
    with pytest.raises(FlowcliError, match="parity check failed: .* px on the .* pair, over 0 px"):
        export.export_onnx(tmp_path / "m.onnx", weights=tiny_weights, check_sizes=SIZES[:1])
    assert os.listdir(tmp_path) == []


# -- bad input: one line each, nothing written ----------------------------------------------------
@pytest.fixture
def refused(run_cli, assert_clean_failure, visible_files, tmp_path):
    """refused(*args, words=(...)): `flowcli export -o tmp/m.onnx ARGS` fails in one line holding words."""

    def _refused(*args, words, output=None):
        before = visible_files(tmp_path)
        result = run_cli("export", "-o", output or tmp_path / "m.onnx", *args)
        assert_clean_failure(result, *words, before=before, folder=tmp_path)

    return _refused


def test_unwritable_missing_or_existing_output(refused, tiny_weights, tmp_path, monkeypatch):
    refused("--weights", tiny_weights, words=("does not exist",), output=tmp_path / "no" / "m.onnx")
    (tmp_path / "m.onnx").write_text("mine")
    refused("--weights", tiny_weights, words=("already exists", "--overwrite"))
    assert (tmp_path / "m.onnx").read_text() == "mine"
    (tmp_path / "locked").mkdir()
    readable = os.access  # a read-only folder, as root would not see a chmod
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if mode & os.W_OK else readable(path, mode, **kw))
    refused("--weights", tiny_weights, words=("not writable",), output=tmp_path / "locked" / "m.onnx")
    assert list((tmp_path / "locked").iterdir()) == []


def test_an_output_not_ending_in_onnx(refused, tiny_weights, tmp_path):
    refused("--weights", tiny_weights, words=("flownets.txt", "written as .onnx", "'.txt'"),
            output=tmp_path / "flownets.txt")


def test_weights_of_another_width(refused, tiny_weights):
    refused("--weights", tiny_weights, "--width", "0.5", words=("width 0.125", "--width 0.5 was asked for"))


def test_bf16_is_refused(run_cli, tmp_path):
    from flowcli.errors import FlowcliError
    from flowcli.inference.export import export_onnx

    result = run_cli("export", "-o", tmp_path / "m.onnx", "--dtype", "bf16")  # not offered: a usage error
    assert result.exit_code == 2 and "'bf16' is not one of 'fp32', 'fp16'" in result.stderr, result.stderr
    with pytest.raises(FlowcliError, match="dtype=bf16"):  # and the library says why
        export_onnx(tmp_path / "m.onnx", weights="random", dtype="bf16")
    assert not list(tmp_path.iterdir())


def test_without_the_extra(refused, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    refused("--weights", "random", words=("onnxruntime is missing", 'pip install -e ".[onnx]"'))
