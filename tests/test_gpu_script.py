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
def test_gpu_script_smoke_run_returns_results_and_fp16_weight_parts_when_fp32_is_too_big(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    env = {**os.environ, "OUT": str(out), "RUN": str(run), "SMOKE": "1", "DEVICE": "cpu", "PYTHON": sys.executable,
           "LIMIT_MIB": "3", "OMP_NUM_THREADS": "1", "PROBE": "2"}  # the shipped file (~9.8 MB) is over 3 MiB
    done = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = sorted(out.glob("best.part*.safetensors"))
    assert sorted(p.name for p in out.iterdir()) == sorted(["results.tar.gz", *(p.name for p in parts)])
    assert len(parts) == 2 and all(p.stat().st_size <= 3 * 2**20 for p in parts)  # fp16: ~4.9 MB in two
    with tarfile.open(out / "results.tar.gz") as tar:
        names = {Path(m.name).name for m in tar.getmembers() if m.isfile()}
        train = json.load(tar.extractfile("run-results/train.json"))
        evaluation = json.load(tar.extractfile("run-results/eval_defaults.json"))
        steps = tar.extractfile("run-results/steps.txt").read().decode()
    assert {"machine.txt", "train.log", "log.jsonl", "config.json", "eval_defaults.json", "bench_fp32_b1.json",
            "probe_2.jsonl"} <= names
    assert train["epochs"] == 1 and evaluation["pairs"] == 1
    assert [line.split()[1] for line in steps.splitlines()] == ["probe", "train", "weights", "eval", "bench"]
    assert "trained 1 epochs" in done.stdout and "fp32_b1" in done.stdout and "probe batch 2:" in done.stdout
    # joined, the parts hold the run's weights rounded to fp16, with the same metadata (architecture, config)
    subprocess.run([sys.executable, "benchmarks/weight_parts.py", "join", *parts, "-o", tmp_path / "joined.safetensors"],
                   cwd=ROOT, check=True)
    with safe_open(run / "best.safetensors", "pt") as full, safe_open(tmp_path / "joined.safetensors", "pt") as half:
        assert half.metadata() == full.metadata()
        assert set(half.keys()) == set(full.keys())
        for key in full.keys():
            a, b = full.get_tensor(key), half.get_tensor(key)
            assert b.dtype == (a.half().dtype if a.is_floating_point() else a.dtype)
            assert (b == (a.half() if a.is_floating_point() else a)).all(), key


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_gpu_script_logs_a_failed_step_and_returns_nothing_untrained(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(b"an earlier run's file")  # must not come back as this run's
    env = {**os.environ, "OUT": str(out), "RUN": str(run), "SMOKE": "1", "DEVICE": "cpu", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "INIT": str(tmp_path / "missing.safetensors")}
    done = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(out / "results.tar.gz") as tar:
        steps = tar.extractfile("run-results/steps.txt").read().decode().splitlines()
    assert steps[0].startswith("FAILED train") and steps[1].startswith("no trained weights")
    assert len(steps) == 2 and sorted(p.name for p in out.iterdir()) == ["results.tar.gz"]


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_gpu_script_skips_a_training_that_would_end_past_the_deadline(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "RUN": str(tmp_path / "run"), "SMOKE": "1", "DEVICE": "cpu",
           "PYTHON": sys.executable, "DEADLINE": "30"}  # the smoke run's training asks for 41 s
    done = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(out / "results.tar.gz") as tar:
        steps = tar.extractfile("run-results/steps.txt").read().decode().splitlines()
    assert steps[0].startswith("skipped train") and steps[1].startswith("no trained weights")
