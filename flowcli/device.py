"""Device and dtype choice in one place, so every command refuses the same way."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
from contextlib import contextmanager
from typing import Iterator

import torch

from .errors import DeviceError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a DeviceError, not a crash."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device={name!r} is not a device: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device={name}: CUDA is not available on this machine (use device=cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise DeviceError(f"device={name}: only cpu and cuda are supported")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """fp16 weights are a CUDA feature; bf16 also runs on CPUs with native bf16 (AVX-512 BF16/AMX),
    where it is about 2x faster than fp32 (see README for its EPE difference)."""
    if name not in DTYPES:
        raise DeviceError(f"dtype={name}: choose one of {', '.join(DTYPES)}")
    if device.type != "cuda":
        if name == "fp16":
            raise DeviceError("dtype=fp16 needs device=cuda; on a CPU use fp32 (or bf16 where supported)")
        if name == "bf16" and not cpu_has_bf16():
            raise DeviceError("dtype=bf16 needs device=cuda or a CPU with native bf16; use dtype=fp32")
    return DTYPES[name]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with this many intra-op CPU threads (None: unchanged), then restore the count."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the OS (glibc only;
    elsewhere, or with FLOWCLI_KEEP_FREED_MEMORY=0, nothing changes). Returns whether it applies.

    glibc maps every block over 32 MiB afresh and unmaps it on free, so each large batch or
    activation tensor on the CPU pays page faults and zeroing on its first write: 30 ms instead
    of 6 ms for a 110 MB write, ~15 % of a CPU training step (benchmarks/README.md, "Allocator").
    Kept, the memory of one step is reused by the next, also for a thread drawing batches (one
    arena for all threads); the process stays at least at its peak size until it exits.
    The CLI calls it for a CPU (training, generating and inference alike); from Python, call it first."""
    if os.environ.get("FLOWCLI_KEEP_FREED_MEMORY", "1").lower() in ("0", "false", "no", "off"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the allocator this process uses, if it has mallopt
    except (OSError, TypeError, AttributeError):  # Windows, macOS, musl
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim
    return all([bool(mallopt(option, value)) for option, value in settings])


def check_compile_toolchain(device: torch.device) -> None:
    """Fail early, in one line, when torch.compile cannot work on `device`: before any work, not
    as an inductor traceback at the first compiled call."""
    try:
        import torch._dynamo
    except Exception as exc:  # broken or absent in some builds
        raise DeviceError(f"compile=True: torch.compile is unavailable ({type(exc).__name__})") from None
    if not torch._dynamo.is_dynamo_supported():
        raise DeviceError("compile=True: torch.compile is not supported with this Python/torch; run without it")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise DeviceError("compile=True on CUDA needs Triton (pip install triton); run without it")
        return
    chosen = os.environ.get("CXX")  # inductor builds with $CXX when it is set, else finds one
    if chosen and shutil.which(chosen) is None:
        raise DeviceError(f"compile=True on CPU builds C++ with $CXX, and {chosen} was not found; "
                          "fix CXX or run without it")
    if not chosen and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise DeviceError("compile=True on CPU needs a C++ compiler (g++ or clang++); run without it")


def available_memory() -> int | None:
    """Bytes of memory this process may still take: Linux's MemAvailable, or less where a container's
    memory limit (cgroup v2, then v1) leaves less; None where neither is known (not Linux)."""
    figures = []
    try:
        with open("/proc/meminfo") as f:
            figures += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as a, open(usage) as b:
                figures.append(max(0, int(a.read().strip()) - int(b.read().strip())))  # "max": no limit
            break
        except (OSError, ValueError):
            continue
    return min(figures) if figures else None


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({cpu_model()}, {threads} thread{'' if threads == 1 else 's'})"


def cpu_model() -> str:
    """The CPU's marketing name, for benchmark headers."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
