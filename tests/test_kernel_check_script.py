"""benchmarks/kernel_check.py: the generator's scenes compared across devices and compiled kernels."""

from __future__ import annotations

import json

import pytest


def test_the_same_device_gives_no_difference_and_another_seed_does(load_benchmark, tmp_path):
    check = load_benchmark("kernel_check")
    out = tmp_path / "check.json"
    check.main(["--variants", "cpu", "cpu", "--size", "37x45", "--batch-size", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["size"] == [37, 45] and [r["variant"] for r in report["rows"]] == ["cpu", "cpu"]
    assert report["rows"][1]["image_max_diff"] == report["rows"][1]["flow_max_diff"] == 0
    assert report["rows"][1]["layer_mismatch_share"] == 0
    # compare() must see a difference where there is one: another seed's scenes
    config = check.SynthConfig(height=37, width=45)
    a, _ = check.render("cpu", config, 2, seed=1)
    b, _ = check.render("cpu", config, 2, seed=2)
    gaps = check.compare(a, b)
    assert gaps["image_max_diff"] > 0.1 and gaps["flow_max_diff"] > 0 and 0 < gaps["layer_mismatch_share"] <= 1


def test_a_variant_beyond_the_tolerance_exits_with_its_name(load_benchmark):
    check = load_benchmark("kernel_check")
    with pytest.raises(SystemExit, match="beyond the tolerances: cpu$"):
        check.main(["--variants", "cpu", "cpu", "--size", "37x45", "--batch-size", "1", "--tolerance", "-1"])
