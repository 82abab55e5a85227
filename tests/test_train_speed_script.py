"""benchmarks/train_speed.py: alternated training runs, their throughput read from each run's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_train_speed_reports_each_variant_from_its_runs_logs(tmp_path):
    out = tmp_path / "speed.json"
    base = "--preset quick --device cpu --crop 64x64 --batch-size 2"
    cmd = [sys.executable, "benchmarks/train_speed.py", "--base", base, "--also", "--workers 1", "--epochs", "2",
           "--steps", "1", "--json", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    for name in ("baseline", "--workers 1"):
        (run,) = report["runs"][name]
        assert [epoch["epoch"] for epoch in run] == [1, 2]
        row = report["results"][name]  # epoch 2 alone after the first: its own figures, rounded
        assert row["img_s"] == [round(run[1]["images_per_s"], 1)] and row["data_share"] == [round(run[1]["data_share"], 3)]
        assert row["first_epoch_img_s"] == [round(run[0]["images_per_s"], 1)]
        assert f"| {name} | {row['img_s'][0]} | {row['data_share'][0]:.0%} |" in result.stdout
    assert result.stdout.startswith("python benchmarks/train_speed.py --base")


def test_a_failing_run_is_reported_with_its_error():
    cmd = [sys.executable, "benchmarks/train_speed.py", "--base", "--preset nosuch", "--epochs", "1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "--preset nosuch" in result.stderr and "is not one of" in result.stderr


def test_a_variants_environment_words_set_its_runs_environment(load_benchmark, monkeypatch, tmp_path):
    train_speed = load_benchmark("train_speed")
    assert train_speed.split_environment("A=1 B='x y' --crop 64x64 C=2") == (
        {"A": "1", "B": "x y"}, ["--crop", "64x64", "C=2"])  # only leading words are settings
    assert train_speed.with_variant("A=1 B=2 --device cpu", "B=3 --compile") == "A=1 B=3 --device cpu --compile"
    assert train_speed.with_variant("--device cpu", "--workers 1") == "--device cpu --workers 1"
    seen = {}

    def fake_run(cmd, env, **kwargs):  # what the run would be started with; it leaves a one-epoch log
        seen.update(cmd=cmd, env=env)
        (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(train_speed.subprocess, "run", fake_run)
    assert train_speed.run_once("FLOWCLI_KEEP_FREED_MEMORY=0 --device cpu", 1, 2, tmp_path) == [{"epoch": 1}]
    assert seen["env"]["FLOWCLI_KEEP_FREED_MEMORY"] == "0" and seen["env"]["PATH"] == os.environ["PATH"]
    assert seen["cmd"][3:6] == ["train", "--device", "cpu"] and "FLOWCLI_KEEP_FREED_MEMORY=0" not in seen["cmd"]
