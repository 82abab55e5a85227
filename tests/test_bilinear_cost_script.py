"""benchmarks/bilinear_cost.py: the cost is zero where the flow is smooth enough for bilinear,
equals a hand-computed value at a motion edge, and a tiny run writes its JSON."""

from __future__ import annotations

import json

import pytest
import torch


def test_a_constant_or_linear_flow_costs_nothing_inside(load_benchmark):
    script = load_benchmark("bilinear_cost")
    constant = torch.full((1, 2, 16, 24), 3.5)
    assert script.bilinear_cost(constant).abs().max() < 1e-5
    ramp = torch.arange(24.0).view(1, 1, 1, 24).expand(1, 2, 16, 24).contiguous()  # u = v = column index
    inside = script.bilinear_cost(ramp)[0, :, 2:-2]  # bilinear clamps at the border: there a ramp is off
    assert inside.abs().max() < 1e-4


def test_a_vertical_motion_edge_costs_what_bilinear_blurs(load_benchmark):
    """u = 0 left of column 8, 4 from it (a block boundary). The block means keep the edge; bilinear
    gives the block across the edge a weight of 3/8 at the columns next to it (7, 8), 1/8 one further
    (6, 9) and 0 beyond: errors 4 * 3/8 and 4 * 1/8."""
    script = load_benchmark("bilinear_cost")
    flow = torch.zeros(1, 2, 8, 16)
    flow[:, 0, :, 8:] = 4.0
    row = script.bilinear_cost(flow)[0, 0]
    want = torch.zeros(16)
    want[[6, 9]], want[[7, 8]] = 0.5, 1.5
    assert torch.allclose(row, want, atol=1e-5)


def test_a_tiny_run_writes_each_set(load_benchmark, tmp_path, capsys):
    script = load_benchmark("bilinear_cost")
    assert script.main(["--count", "1", "--size", "64x96", "--json", str(tmp_path / "cost.json")]) == 0
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert saved["count"] == 1 and saved["size"] == [64, 96]
    assert set(saved["bilinear_epe"]) == {"test", "seed 99", "wide motion"}
    assert all(0 < v < 5 for v in saved["bilinear_epe"].values())
    assert "EPE of bilinear upsampling" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--size", "66x96"])
