"""benchmarks/gpu_finetune.sh in two calls, as a 15-minute device lease is used: the first trains and
returns the weights, the second evaluates, benchmarks and probes; bad settings are refused before
anything runs. (A file of its own: the smoke runs of test_gpu_script.py take as long, and pytest's
workers take whole files.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_gpu_script_in_two_phases_trains_in_one_call_and_evaluates_in_the_next(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "RUN": str(run), "SMOKE": "1", "DEVICE": "cpu", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "PROBE": "2"}
    steps = {}
    # the second call on a fresh machine: the first run's folder is gone, its returned parts are carried up
    for phase, extra in (("train", {}), ("evaluate", {"RUN": str(tmp_path / "fresh" / "run"), "PARTS": str(tmp_path / "train")})):
        out = tmp_path / phase
        done = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env={**env, "OUT": str(out),
                              "PHASE": phase, **extra}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        with tarfile.open(out / "results.tar.gz") as tar:
            steps[phase] = [line.split()[1] for line in tar.extractfile("run-results/steps.txt").read().decode().splitlines()]
        assert (phase == "train") == any(out.glob("best.part*.safetensors"))  # the weights come back once
    assert steps == {"train": ["train", "weights"], "evaluate": ["join", "eval", "bench", "probe"]}  # probes take no training time
    for bad_env, message in [({"PHASE": "evaluation"}, "PHASE=evaluation: choose all, train or evaluate"),
                             ({"PROBE": "2 2:reduce-overhead"}, "PROBE=2:reduce-overhead: a compile mode needs PROBE_COMPILE=1"),
                             ({"PROBE": "2:fast", "PROBE_COMPILE": "1"}, "PROBE=2:fast: the mode is one of default")]:
        bad = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env={**env, "OUT": str(tmp_path / "x"),
                             **bad_env}, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.strip().startswith(message), bad.stderr
        assert not (tmp_path / "x").exists()  # refused before anything ran
