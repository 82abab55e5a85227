"""benchmarks/classical.py (FlowNetS vs OpenCV): a tiny run; skipped where OpenCV is not installed."""

from __future__ import annotations

import json
import math

import pytest

METHODS = ("FlowNetS", "FlowNetS --tta hflip --refine 1", "DIS (medium)", "Farneback", "zero flow")


def test_classical_script_small_run(tmp_path, capsys, monkeypatch, load_benchmark):
    pytest.importorskip("cv2", reason="OpenCV is not a flowcli dependency (pip install opencv-python-headless)")
    import torch

    import flowcli.inference.evaluate

    magnitudes = []  # mean ground-truth flow magnitude of each pair the script is given
    original = flowcli.inference.evaluate.generated_batches

    def recording(count, size, device, **scenes):
        for item in original(count, size, device, **scenes):
            magnitudes.append(item[3].norm(dim=1).mean().item())
            yield item

    monkeypatch.setattr(flowcli.inference.evaluate, "generated_batches", recording)
    threads = torch.get_num_threads()
    script = load_benchmark("classical")
    out_md, out_json = tmp_path / "results.md", tmp_path / "results.json"
    try:
        code = script.main(["--count", "2", "--size", "128x160", "--weights", "random", "--threads", "1",
                            "--also", "--tta hflip --refine 1", "--out", str(out_md), "--json", str(out_json)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    report = json.loads(out_json.read_text())
    for key in ("command", "date", "cpu", "threads", "torch", "opencv", "weights", "farneback", "sources"):
        assert key in report
    assert report["threads"] == 1 and report["weights"] == "random"
    [source] = report["sources"]
    assert source["pairs"] == 2 and source["sizes"] == ["128x160"]
    assert list(source["methods"]) == list(METHODS)
    assert source["methods"]["FlowNetS --tta hflip --refine 1"]["epe"] != source["methods"]["FlowNetS"]["epe"]
    for name, r in source["methods"].items():
        assert r["valid_pixels"] == 2 * 128 * 160
        assert math.isfinite(r["epe"]) and r["epe"] >= 0
        assert 0 <= r["1px"] <= r["3px"] <= r["5px"] <= 1
        assert r["s40+"] is None or name != "zero flow" or r["s40+"] >= 40  # zero flow's error is the speed
        if name == "zero flow":
            assert r["ms_per_image"] is None
        else:
            assert r["ms_per_image"] > 0
    # the pairs came from flowcli eval's generator, and zero flow's EPE is their mean flow magnitude
    assert len(magnitudes) == 2
    assert source["methods"]["zero flow"]["epe"] == pytest.approx(sum(magnitudes) / 2, rel=1e-5)

    text = out_md.read_text()
    assert text in capsys.readouterr().out  # the same markdown went to stdout
    assert "| method | EPE | <1px | <3px | <5px | EPE s0-10 | EPE s10-40 | EPE s40+ | EPE in-frame | EPE out-of-frame | ms/img |" in text
    for name in METHODS:
        assert f"| {name} |" in text
    for fragment in ("classical.py --count 2", "threads 1", f"OpenCV {report['opencv']}", "torch ", "CPU: "):
        assert fragment in text


def test_classical_script_refuses_unknown_also_options(capsys, load_benchmark):
    pytest.importorskip("cv2", reason="OpenCV is not a flowcli dependency (pip install opencv-python-headless)")
    script = load_benchmark("classical")
    assert script.main(["--count", "1", "--weights", "random", "--also", "--tta hflip --fast 1"]) == 1
    assert "--fast is not one of --tta, --passes, --refine, --backend, --smooth, --no-smooth" in capsys.readouterr().err


def test_also_options_take_values_and_switches(load_benchmark):
    from flowcli.errors import FlowcliError

    script = load_benchmark("classical")
    assert script.predictor_options("--passes 2 --no-smooth --tta hflip") == {"passes": 2, "smooth": False,
                                                                              "tta": "hflip"}
    with pytest.raises(FlowcliError, match="--refine needs a value"):
        script.predictor_options("--tta hflip --refine")
    with pytest.raises(FlowcliError, match="--passes takes a whole number, got 'two'"):
        script.predictor_options("--passes two")


def test_classical_script_takes_other_generated_scenes(monkeypatch, tmp_path, load_benchmark):
    pytest.importorskip("cv2", reason="OpenCV is not a flowcli dependency (pip install opencv-python-headless)")
    import torch

    import flowcli.inference.evaluate

    asked = []
    original = flowcli.inference.evaluate.generated_batches

    def recording(count, size, device, **scenes):
        asked.append(scenes)
        yield from original(count, size, device, **scenes)

    monkeypatch.setattr(flowcli.inference.evaluate, "generated_batches", recording)
    threads = torch.get_num_threads()
    try:
        code = load_benchmark("classical").main(["--count", "1", "--size", "64x96", "--weights", "random",
                                                 "--threads", "1", "--scene-seed", "99", "--motion", "wide",
                                                 "--json", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and asked == [{"motion": "wide", "seed": 99}]
    [source] = json.loads((tmp_path / "r.json").read_text())["sources"]
    assert source["name"] == "generated scenes (seed 99, wide motion)"
