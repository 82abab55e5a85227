"""flowcli.device.available_memory: the smaller of Linux's MemAvailable and a container's headroom."""

from __future__ import annotations

import builtins

import pytest

from flowcli import device


@pytest.fixture
def system(tmp_path, monkeypatch):
    """Files standing in for /proc and /sys, by their real paths; a path without one does not exist."""
    files = {}
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if isinstance(path, str) and path.startswith(("/proc/meminfo", "/sys/fs/cgroup")):
            if path not in files:
                raise FileNotFoundError(path)
            stand_in = tmp_path / path.replace("/", "_")
            stand_in.write_text(files[path])
            return real_open(stand_in, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    return files


def test_memavailable_alone(system):
    system["/proc/meminfo"] = "MemTotal:  24000000 kB\nMemFree:  100 kB\nMemAvailable:  12345 kB\n"
    assert device.available_memory() == 12345 * 1024
    system["/sys/fs/cgroup/memory.max"], system["/sys/fs/cgroup/memory.current"] = "max\n", "5000\n"  # no limit
    assert device.available_memory() == 12345 * 1024


def test_a_containers_limit_leaves_less(system):
    system["/proc/meminfo"] = "MemAvailable:  12345 kB\n"  # the host's
    system["/sys/fs/cgroup/memory.max"], system["/sys/fs/cgroup/memory.current"] = "3000000\n", "1000000\n"
    assert device.available_memory() == 2_000_000
    del system["/sys/fs/cgroup/memory.max"]  # cgroup v1 instead
    system["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "4000000\n"
    system["/sys/fs/cgroup/memory/memory.usage_in_bytes"] = "4500000\n"  # over: nothing left
    assert device.available_memory() == 0


def test_unknown_without_proc_or_cgroup(system):
    assert device.available_memory() is None
