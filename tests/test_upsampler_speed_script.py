"""benchmarks/upsampler_speed.py: its 0.17.0 baseline computes what flowcli's paths compute, and a tiny
run times every variant and writes its JSON."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F


def test_the_baseline_equals_both_of_flowclis_paths(load_benchmark):
    script = load_benchmark("upsampler_speed")
    from flowcli.model import convex_upsample, convex_upsample_pixels

    flow, features, weight, bias = script.inputs(2, (24, 40), hidden=8, seed=1)
    with torch.no_grad():
        want = convex_upsample(flow, F.conv2d(features, weight, bias))
        assert want.shape == (2, 2, 24, 40)
        torch.testing.assert_close(script.upsample_017(flow, features, weight, bias), want, atol=1e-4, rtol=0)
        torch.testing.assert_close(convex_upsample_pixels(flow, features, weight, bias), want, atol=1e-4, rtol=0)


def test_a_tiny_run_times_each_variant(load_benchmark, tmp_path, capsys):
    script = load_benchmark("upsampler_speed")
    out = tmp_path / "speed.json"
    before = torch.get_num_threads()  # conftest sets 1 thread: ask for another number, put back after
    try:
        assert script.main(["--size", "64x64", "--calls", "2", "--train", "--threads", str(before + 1),
                            "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    saved = json.loads(out.read_text())
    assert saved["size"] == [64, 64] and saved["calls"] == 2 and saved["threads"] == before + 1
    assert set(saved["ms"]) == {"inference (0.18.0)", "inference (0.17.0)", "training forward + backward"}
    assert all(0 < v["p10_ms"] <= v["median_ms"] for v in saved["ms"].values())
    assert "inference (0.18.0)" in capsys.readouterr().out


def test_the_pipeline_variant_runs_the_shipped_network_and_refuses_a_bilinear_one(load_benchmark, tmp_path,
                                                                                  capsys, monkeypatch):
    import flowcli.model
    from flowcli.checkpoint import load_model, save_weights
    from flowcli.model import FlowNetS, ModelConfig

    script = load_benchmark("upsampler_speed")
    baseline, ran = script.upsample_017, []
    monkeypatch.setattr(script, "upsample_017", lambda *args: ran.append(args[0].shape) or baseline(*args))
    out = tmp_path / "pipeline.json"
    assert script.main(["--predictor", "fast", "--size", "64x64", "--calls", "1", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["ms"]) == {"pipeline, inference (0.18.0)", "pipeline, inference (0.17.0)"}
    # the network itself took 0.17.0's path (flow2 of 64x64), once in the warm-up round and once timed
    assert ran == [(1, 2, 16, 16)] * 2
    assert flowcli.model.convex_upsample_pixels.__module__ == "flowcli.model"  # put back after the turns
    assert load_model().upsample_mask is not None
    save_weights(tmp_path / "bilinear.safetensors", FlowNetS(ModelConfig(width=0.125)).eval())
    with pytest.raises(SystemExit, match="has no convex upsampler"):
        script.main(["--predictor", str(tmp_path / "bilinear.safetensors"), "--size", "64x64", "--calls", "1"])
