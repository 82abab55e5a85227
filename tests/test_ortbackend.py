"""backend="onnxruntime" (flowcli.inference.ortbackend, `--backend onnxruntime`): the same flow as
torch within tolerance through the whole pipeline, the export cache, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
pytest.importorskip("onnxscript", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install -e ".[onnx]")')



@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, bn_model):
    from flowcli.checkpoint import save_weights

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(path, bn_model(seed=1, width=0.125))
    return path


@pytest.fixture(autouse=True, scope="module")
def cache(tmp_path_factory):
    """One export for the module, in a cache of its own."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cache")
    mp.setenv("FLOWCLI_CACHE", str(folder))
    yield folder
    mp.undo()


def test_predict_agrees_with_torch(run_cli, tiny_weights, make_pair, tmp_path):
    from flowcli.io import read_flo

    img1, img2 = make_pair(height=96, width=160, shift=(2, -3))
    flows = {}
    for backend in ("torch", "onnxruntime"):
        for extra in ((), ("--refine", "0", "--no-smooth")):
            out = tmp_path / f"{backend}{len(extra)}.flo"
            result = run_cli("predict", img1, img2, "-o", out, "--weights", tiny_weights, "--device", "cpu",
                             "--backend", backend, *extra)
            assert result.exit_code == 0, result.output
            flows[backend, bool(extra)] = read_flo(out)
    network_only = np.abs(flows["torch", True] - flows["onnxruntime", True])
    assert np.abs(flows["torch", True]).max() > 0.5 and network_only.max() < 1e-3
    # the default pipeline keeps a refinement step per pixel where it lowers the colour error: float
    # rounding may flip a few of those choices, so compare the bulk and bound the rest
    whole = np.abs(flows["torch", False] - flows["onnxruntime", False])
    assert np.median(whole) < 1e-4 and whole.max() < 0.5


def test_second_predictor_loads_the_cached_export(tiny_weights, cache, monkeypatch):
    import torch

    from flowcli.inference import ortbackend
    from flowcli.inference.engine import load_predictor

    first = load_predictor(tiny_weights, device="cpu", backend="onnxruntime", refine=0, smooth=False)
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1

    def no_export(*args, **kwargs):
        raise AssertionError("exported again instead of reading the cache")

    monkeypatch.setattr(ortbackend, "onnx_model", no_export)
    second = load_predictor(tiny_weights, device="cpu", backend="onnxruntime", refine=0, smooth=False)
    img = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first(img, img.roll(2, -1)), second(img, img.roll(2, -1)))


def test_eval_and_bench_report_the_backend(run_cli, tiny_weights, tmp_path, monkeypatch):
    from flowcli.inference import ortbackend

    sessions = []
    real = ortbackend.ort_session
    monkeypatch.setattr(ortbackend, "ort_session", lambda *a, **k: sessions.append(1) or real(*a, **k))
    result = run_cli("eval", "--weights", tiny_weights, "--backend", "onnxruntime", "--count", "1", "--metric", "epe",
                     "--json", tmp_path / "ort.json")
    assert result.exit_code == 0, result.output
    assert "backend onnxruntime" in result.stdout and "cpu" in result.stdout and sessions == [1]
    assert run_cli("eval", "--weights", tiny_weights, "--count", "1", "--json", tmp_path / "torch.json").exit_code == 0
    ort, plain = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ort", "torch"))
    assert ort["epe"] == pytest.approx(plain["epe"], abs=1e-3) and sessions == [1]  # the torch run made none
    result = run_cli("bench", "--weights", tiny_weights, "--backend", "onnxruntime", "--size", "64x128", "--runs", "2")
    assert result.exit_code == 0, result.output
    assert "backend onnxruntime" in result.stdout


@pytest.mark.parametrize("command", [
    ("predict", "a_img1.ppm", "a_img2.ppm", "-o", "f.flo"), ("eval", "--count", "1"), ("bench", "--runs", "1"),
])
@pytest.mark.parametrize("extra, words", [
    (("--device", "cuda"), ("--device cuda", "--backend onnxruntime runs on the CPU")),
    (("--dtype", "bf16"), ("--dtype bf16", "--backend onnxruntime runs the fp32 network")),
])
def test_cuda_or_bf16_is_refused(run_cli, assert_clean_failure, visible_files, make_pair, tmp_path, monkeypatch,
                                command, extra, words):
    make_pair()
    monkeypatch.chdir(tmp_path)
    before = visible_files(tmp_path)
    result = run_cli(*command, "--weights", "random", "--backend", "onnxruntime", *extra)
    assert_clean_failure(result, *words, before=before, folder=tmp_path)


def test_compile_or_missing_extra_is_refused(run_cli, assert_clean_failure, tmp_path, monkeypatch):
    import sys

    result = run_cli("bench", "--weights", "random", "--backend", "onnxruntime", "--compile")
    assert_clean_failure(result, "--compile", "--backend onnxruntime", before=set(), folder=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = run_cli("bench", "--weights", "random", "--backend", "onnxruntime")
    assert_clean_failure(result, "onnxscript is missing", 'pip install -e ".[onnx]"', before=set(), folder=tmp_path)


@pytest.mark.parametrize("message, expected", [
    ("bad_alloc: Failed to allocate memory for requested buffer of size 4831838208",
     "input 64x128 does not fit in memory at batch 1; try smaller frames"),
    ("Non-zero status code returned while running Conv node", "backend=onnxruntime failed (Fail: Non-zero status"),
])
def test_onnxruntime_failures_are_one_typed_error(tiny_weights, monkeypatch, message, expected):
    import torch
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from flowcli.errors import DeviceError
    from flowcli.inference.engine import load_predictor

    predictor = load_predictor(tiny_weights, device="cpu", backend="onnxruntime")

    def fails(*_):
        raise Fail(message)  # derives from Exception: the out-of-memory path never saw it

    monkeypatch.setattr(predictor._ort.session, "run", fails)
    img = torch.rand(1, 3, 64, 128)
    with pytest.raises(DeviceError, match=re.escape(expected)):
        predictor(img, img)
