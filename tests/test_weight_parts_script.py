"""benchmarks/weight_parts.py: a weights file split into parts under a size limit, and joined back."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from flowcli.checkpoint import load_model, save_weights
from flowcli.model import FlowNetS, ModelConfig


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    save_weights(path, FlowNetS(ModelConfig(width=0.25)), metadata={"val_epe": "3.1"})  # ~9.8 MB in fp32
    return path


def test_a_file_over_the_limit_is_split_in_fp16_parts_that_join_to_the_rounded_weights(load_benchmark, weights_file,
                                                                                        tmp_path):
    parts_module = load_benchmark("weight_parts")
    parts = parts_module.split(weights_file, tmp_path, limit_mib=2)
    assert len(parts) == 3 and all(p.stat().st_size <= 2 * 2**20 for p in parts)  # ~4.9 MB of fp16
    parts_module.join(parts, tmp_path / "joined.safetensors")
    with safe_open(weights_file, "pt") as full, safe_open(tmp_path / "joined.safetensors", "pt") as joined:
        assert joined.metadata() == full.metadata() and set(joined.keys()) == set(full.keys())
        for key in full.keys():
            a, b = full.get_tensor(key), joined.get_tensor(key)
            assert torch.equal(b, a.half() if a.is_floating_point() else a), key
    assert load_model(tmp_path / "joined.safetensors").config.width == 0.25  # a weights file again


def test_a_file_that_fits_stays_in_its_precision_as_one_part(load_benchmark, weights_file, tmp_path):
    (part,) = load_benchmark("weight_parts").split(weights_file, tmp_path, limit_mib=16)
    with safe_open(weights_file, "pt") as full, safe_open(part, "pt") as kept:
        assert kept.metadata() == {**full.metadata(), "weight_parts": "1/1"}
        for key in full.keys():
            assert kept.get_tensor(key).dtype == full.get_tensor(key).dtype
            assert torch.equal(full.get_tensor(key), kept.get_tensor(key)), key


def test_join_refuses_an_incomplete_or_doubled_set_and_split_clears_an_earlier_one(load_benchmark, weights_file,
                                                                                  tmp_path):
    parts_module = load_benchmark("weight_parts")
    (tmp_path / "w.part7.safetensors").write_bytes(b"stale")  # an earlier, larger split's last part
    parts = parts_module.split(weights_file, tmp_path, limit_mib=2)
    assert sorted(tmp_path.glob("w.part*.safetensors")) == sorted(parts)
    with pytest.raises(SystemExit, match="2 of 3 parts"):
        parts_module.join(parts[:2], tmp_path / "joined.safetensors")
    with pytest.raises(SystemExit, match="twice"):
        parts_module.join([*parts, parts[0]], tmp_path / "joined.safetensors")
    with pytest.raises(SystemExit, match="not a part"):
        parts_module.join([weights_file], tmp_path / "joined.safetensors")
    assert not (tmp_path / "joined.safetensors").exists()


def test_a_tensor_over_the_limit_is_refused_not_returned_too_big(load_benchmark, weights_file, tmp_path):
    with pytest.raises(SystemExit, match="alone is"):
        load_benchmark("weight_parts").split(weights_file, tmp_path, limit_mib=0.5)  # conv6_1's weight alone: 1.1 MiB in fp16
