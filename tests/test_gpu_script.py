"""benchmarks/gpu_finetune.sh, the prepared GPU run: its smoke mode on the CPU goes through every step
(train, eval, bench, packing) and returns what the device tool can bring back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_gpu_script_smoke_run_returns_results_and_fp16_weights_when_fp32_is_too_big(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    env = {**os.environ, "OUT": str(out), "RUN": str(run), "SMOKE": "1", "DEVICE": "cpu", "PYTHON": sys.executable,
           "LIMIT_MIB": "1", "OMP_NUM_THREADS": "1"}  # the shipped file (~9.8 MB) is over 1 MiB: fp16 path
    done = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["best.fp16.safetensors", "results.tar.gz"]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = {Path(m.name).name for m in tar.getmembers() if m.isfile()}
        train = json.load(tar.extractfile("results/train.json"))
        evaluation = json.load(tar.extractfile("results/eval_defaults.json"))
    assert {"machine.txt", "train.log", "log.jsonl", "config.json", "eval_defaults.json",
            "bench_fp32_b1.json"} <= names
    assert train["epochs"] == 1 and evaluation["pairs"] == 1
    assert "trained 1 epochs" in done.stdout and "fp32_b1" in done.stdout
    # the fp16 file holds the run's weights rounded, with the same metadata (architecture, config)
    with safe_open(run / "best.safetensors", "pt") as full, safe_open(out / "best.fp16.safetensors", "pt") as half:
        assert half.metadata() == full.metadata()
        assert set(half.keys()) == set(full.keys())
        for key in full.keys():
            a, b = full.get_tensor(key), half.get_tensor(key)
            assert b.dtype == (a.half().dtype if a.is_floating_point() else a.dtype)
            assert (b == (a.half() if a.is_floating_point() else a)).all(), key
    assert (out / "best.fp16.safetensors").stat().st_size < 0.6 * (run / "best.safetensors").stat().st_size
