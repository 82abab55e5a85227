"""flowcli.device.keep_freed_memory: on glibc, a large freed block stays with the process, so the next
step's tensors reuse pages already touched instead of faulting in fresh ones."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's allocator (Linux) only")

# In a fresh process: resident memory before, during and after a 256 MiB tensor lives.
SCRIPT = """
import os, torch
from flowcli.device import keep_freed_memory
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
applied = keep_freed_memory()
before = resident()
block = torch.ones(64 << 20)  # 256 MiB, every page written
during = resident()
del block
print(applied, before, during, resident())
"""


def resident_mib(setting: str | None) -> tuple[bool, int, int, int]:
    """(applied, resident MiB before, during, after) in a fresh process with glibc's own defaults."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWCLI_KEEP_FREED_MEMORY", "LD_PRELOAD", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    if setting is not None:
        env["FLOWCLI_KEEP_FREED_MEMORY"] = setting
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    applied, *sizes = done.stdout.split()
    return (applied == "True", *map(int, sizes))


def test_freed_memory_stays_with_the_process():
    applied, before, during, after = resident_mib(None)
    assert applied and during - before >= 250
    assert after - before >= 250  # kept for reuse, not unmapped


def test_the_environment_can_turn_it_off():
    applied, before, during, after = resident_mib("off")
    assert not applied and during - before >= 250
    assert after - before < 50  # glibc's default: a block this large goes back to the OS at once


def test_cpu_training_generating_and_inference_turn_it_on(run_cli, monkeypatch, tmp_path, tiny_pair):
    import flowcli.device

    calls = []
    monkeypatch.setattr(flowcli.device, "keep_freed_memory", lambda: calls.append(1) or True)
    result = run_cli("synth", tmp_path / "set", "--count", 6, "--size", "64x96", "--device", "cpu")
    assert result.exit_code == 0 and calls == [1]
    result = run_cli("train", tmp_path / "set", "--epochs", 1, "--batch-size", 2, "--crop", "64x64",
                     "--width", 0.25, "--split", "seeded", "--device", "cpu", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert calls == [1, 1]
    commands = (("predict", *tiny_pair, "-o", tmp_path / "out.flo"), ("eval", tmp_path / "set", "--split", "all", "--metric", "epe"),
                ("bench", "--size", "64x64", "--runs", 1), ("visualize", "--pair", *tiny_pair, "-o", tmp_path / "v.png"))
    for number, command in enumerate(commands, 3):
        result = run_cli(*command, "-w", "random", "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert calls == [1] * number, command[0]


def test_not_for_a_gpu_nor_a_device_that_is_not_there(run_cli, monkeypatch):
    import flowcli.device
    from flowcli.cli.common import reuse_freed_memory

    calls = []
    monkeypatch.setattr(flowcli.device, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = run_cli("bench", "--size", "64x64", "--runs", 1, "-w", "random", "--device", "cuda")
    assert result.exit_code == 1 and calls == []
    assert "CUDA is not available" in result.output and "Traceback" not in result.output
    # with a GPU, its tensors are not glibc's to keep: what the commands call, asked for cuda and for auto
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    for device in ("cuda", "auto"):
        reuse_freed_memory(device)
    assert calls == []
    reuse_freed_memory("cpu")
    assert calls == [1]
