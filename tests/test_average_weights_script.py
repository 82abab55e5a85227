"""benchmarks/average_weights.py: the mean of weights files, tensor by tensor, in the first file's
dtypes and with its metadata; files of other tensors are refused."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def test_the_average_is_the_mean_of_each_tensor_with_the_first_files_dtypes_and_metadata(load_benchmark, tmp_path):
    script = load_benchmark("average_weights")
    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.float16), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 6.0], dtype=torch.float16), "n": torch.tensor(4)}
    c = {"w": torch.tensor([5.0, 1.0], dtype=torch.float16), "n": torch.tensor(4)}
    for name, tensors in (("a", a), ("b", b), ("c", c)):
        save_file(tensors, tmp_path / f"{name}.safetensors",
                  metadata={"config": '{"width": 0.5}', "from": name, "epoch": name, "val_epe": "2.9"})
    tensors, metadata = script.average([tmp_path / f"{n}.safetensors" for n in "abc"])
    assert tensors["w"].dtype == torch.float16 and tensors["w"].tolist() == [3.0, 3.0]
    assert tensors["n"].dtype == torch.int64 and tensors["n"].item() == 4
    assert metadata == {"config": '{"width": 0.5}', "from": "a"}  # no epoch or figure of the first file's own
    save_file(a, tmp_path / "wide.safetensors", metadata={"config": '{"width": 1.0}'})
    with pytest.raises(SystemExit, match="wide.safetensors: another architecture"):
        script.average([tmp_path / "a.safetensors", tmp_path / "wide.safetensors"])
    save_file({"other": torch.zeros(2)}, tmp_path / "d.safetensors")
    with pytest.raises(SystemExit, match="d.safetensors: holds other tensors than"):
        script.average([tmp_path / "a.safetensors", tmp_path / "d.safetensors"])


def test_the_command_writes_a_new_file_and_refuses_an_existing_one(load_benchmark, tmp_path, monkeypatch):
    script = load_benchmark("average_weights")
    for name, value in (("a", 1.0), ("b", 2.0)):
        save_file({"w": torch.full((3,), value)}, tmp_path / f"{name}.safetensors")
    argv = ["average_weights.py", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "-o", str(tmp_path / "m.safetensors")]
    monkeypatch.setattr("sys.argv", argv)
    script.main()
    with safe_open(tmp_path / "m.safetensors", "pt") as f:
        assert f.get_tensor("w").tolist() == [1.5] * 3 and f.metadata()["averaged_from"].endswith("b.safetensors")
    with pytest.raises(SystemExit, match="already exists"):
        script.main()
