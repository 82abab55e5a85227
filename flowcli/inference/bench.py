"""The benchmark API: time the inference engine (Predictor, with its pipeline) on random frames.

As nanoGPT's bench: warm-up runs are excluded (CUDA graph capture, cuDNN autotuning), every timed
run ends with torch.cuda.synchronize on CUDA, the time per image is the batch time / batch size.
GFLOP/img counts the network's convolutions only (model.conv_gflops), not the post-network steps.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from ..checkpoint import DEFAULT_WEIGHTS, RANDOM, RANDOM_CONFIG, load_model, weights_label, weights_path
from ..device import DTYPES, available_memory, describe, resolve_device, resolve_dtype, torch_threads
from ..errors import DeviceError, OutOfMemoryError
from ..model import MIN_SIDE, STRIDE, FlowNetS, ModelConfig, conv_gflops, count_parameters
from ..results import JsonResult
from .engine import Predictor
from .options import TTA_VIEWS, InferenceOptions
from .ortbackend import check_backend

REFERENCE_S_PER_IMAGE = 0.0107  # the figure flowcli is compared against
# run_sweep's default grid (batch sizes, sizes HxW) per device type: the CUDA grid would take hours on a CPU.
SWEEP_GRID = {
    "cuda": ((1, 2, 4, 8, 16, 32, 64, 128, 256), ((384, 512), (768, 1024), (1080, 1920))),
    "cpu": ((1, 2, 4), ((384, 512), (768, 1024))),
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class BenchResult(JsonResult):
    """One timed configuration. Times in ms per image; peak memory in MB (CUDA: allocated; CPU: max RSS)."""

    device: str
    device_name: str
    torch_version: str
    threads: int
    dtype: str
    batch_size: int
    height: int
    width: int
    weights: str
    options: InferenceOptions
    compile: bool
    cuda_graphs: bool
    params: int
    gflops_per_image: float
    median_ms_per_image: float
    p90_ms_per_image: float
    images_per_s: float
    tflops_achieved: float
    peak_memory_mb: float
    peak_memory_note: str
    runs: int
    warmup: int
    reference_s_per_image: float = REFERENCE_S_PER_IMAGE

    @property
    def speedup_vs_reference(self) -> float:
        return self.reference_s_per_image / (self.median_ms_per_image / 1000)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "speedup_vs_reference": self.speedup_vs_reference}


@dataclass(frozen=True)
class SkippedBench(JsonResult):
    """A sweep's configuration that was not timed (it did not fit in memory), and why."""

    device: str
    batch_size: int
    height: int
    width: int
    skipped: str


def run_bench(*, device: str = "auto", size: tuple[int, int] = (384, 512), batch_size: int = 1,
              dtype: str = "fp32", compile: bool = False, weights: str | os.PathLike | None = None,
              model_width: float | None = None, warmup: int = 5, runs: int = 30, min_seconds: float = 0.0,
              threads: int | None = None, cuda_graphs: bool = True,
              options: InferenceOptions = InferenceOptions()) -> BenchResult:
    """Time `batch_size` x `size` (H, W) frames through the Predictor.

    weights: None = the shipped default (or, when no file is shipped, a random model of width
    `model_width`, said so in the "weights" field); "random" = a random model of `model_width`
    (None: the shipped default's architecture, checkpoint.RANDOM_CONFIG).
    Timed runs: at least `runs`, and more until `min_seconds` have passed.
    Raises DeviceError for an unavailable device/dtype, a size below 64 or a batch that does not fit.
    """
    torch_device = resolve_device(check_backend(options.backend, device, dtype, compile=compile))
    torch_dtype = resolve_dtype(dtype, torch_device)
    _check_args(size, batch_size, warmup, runs, threads)
    model, label = _load(weights, model_width)
    with torch_threads(threads):
        return _measure(model, label, device=torch_device, dtype=torch_dtype, size=size,
                        batch_size=batch_size, compile=compile, warmup=warmup, runs=runs,
                        min_seconds=min_seconds, cuda_graphs=cuda_graphs, options=options)


def run_sweep(*, device: str = "auto", batch_sizes: Sequence[int] | None = None,
              sizes: Sequence[tuple[int, int]] | None = None, dtype: str = "fp32", compile: bool = False,
              weights: str | os.PathLike | None = None, model_width: float | None = None, warmup: int = 5,
              runs: int = 30, min_seconds: float = 0.0, threads: int | None = None,
              cuda_graphs: bool = True, on_result: Callable[[BenchResult | SkippedBench], None] | None = None,
              options: InferenceOptions = InferenceOptions()) -> list[BenchResult | SkippedBench]:
    """run_bench over sizes x batch sizes (defaults: SWEEP_GRID for the device's type). A
    combination that does not fit in memory is a SkippedBench, and so are the larger batches of
    that size after it. `on_result` sees each row as it is made.
    """
    torch_device = resolve_device(check_backend(options.backend, device, dtype, compile=compile))
    torch_dtype = resolve_dtype(dtype, torch_device)
    default_batches, default_sizes = SWEEP_GRID[torch_device.type]
    batch_sizes = sorted(batch_sizes or default_batches)
    sizes = list(sizes or default_sizes)
    for size in sizes:
        _check_args(size, batch_sizes[0], warmup, runs, threads)
    model, label = _load(weights, model_width)
    rows = []
    with torch_threads(threads):
        for height, width in sizes:
            failed_at = None
            for batch in batch_sizes:
                if failed_at is not None:
                    row = _skipped(torch_device, batch, height, width, f"batch {failed_at} already did not fit")
                else:
                    try:
                        row = _measure(model, label, device=torch_device, dtype=torch_dtype,
                                       size=(height, width), batch_size=batch, compile=compile,
                                       warmup=warmup, runs=runs, min_seconds=min_seconds,
                                       cuda_graphs=cuda_graphs, options=options)
                    except OutOfMemoryError as exc:  # a compile failure is not one: it stops the sweep
                        failed_at = batch
                        row = _skipped(torch_device, batch, height, width, str(exc))
                rows.append(row)
                if on_result:
                    on_result(row)
    return rows


def markdown_table(rows: Sequence[BenchResult | SkippedBench]) -> str:
    """Results of run_bench/run_sweep as a markdown table (skipped rows keep their reason)."""
    head = ("| size (HxW) | batch | median ms/img | p90 ms/img | img/s | GFLOP/img | TFLOP/s | peak MB "
            "| x reference | note |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        size = f"{r.height}x{r.width}"
        if isinstance(r, SkippedBench):
            lines.append(f"| {size} | {r.batch_size} | - | - | - | - | - | - | - | skipped: {r.skipped} |")
            continue
        lines.append(
            f"| {size} | {r.batch_size} | {r.median_ms_per_image:.3f} | {r.p90_ms_per_image:.3f} "
            f"| {r.images_per_s:.1f} | {r.gflops_per_image:.2f} | {r.tflops_achieved:.3f} "
            f"| {r.peak_memory_mb:.0f} | {r.speedup_vs_reference:.2f} | |"
        )
    return "\n".join(lines) + "\n"


def _check_args(size, batch_size: int, warmup: int, runs: int, threads: int | None) -> None:
    height, width = size
    if min(height, width) < MIN_SIDE:
        raise DeviceError(f"size={height}x{width}: height and width must be at least {MIN_SIDE}")
    for name, value, least in (("batch_size", batch_size, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if value < least:
            raise DeviceError(f"{name}={value}: must be at least {least}")
    if threads is not None and threads < 1:
        raise DeviceError(f"threads={threads}: must be at least 1")


def _load(weights, model_width: float | None) -> tuple[FlowNetS, str]:
    """The model to time and how to name it in the result."""
    config = RANDOM_CONFIG if model_width is None else replace(RANDOM_CONFIG, width=model_width)
    if weights is not None and str(weights) == RANDOM:
        return load_model(RANDOM, config=config), RANDOM
    if weights is None and not DEFAULT_WEIGHTS.is_file():
        note = f"random (width {config.width:g}; no shipped weights at {DEFAULT_WEIGHTS})"
        return load_model(RANDOM, config=config), note
    return load_model(weights_path(weights)), weights_label(weights)


def _skipped(device: torch.device, batch: int, height: int, width: int, reason: str) -> SkippedBench:
    return SkippedBench(str(device), batch, height, width, reason)


def _measure(model: FlowNetS, label: str, *, device: torch.device, dtype: torch.dtype, size, batch_size: int,
             compile: bool, warmup: int, runs: int, min_seconds: float, cuda_graphs: bool,
             options: InferenceOptions) -> BenchResult:
    height, width = size
    on_cuda = device.type == "cuda"
    views = len(TTA_VIEWS[options.tta])
    gflops = conv_gflops(model.config, height, width) * views * options.passes  # the network's; not refine's
    if not on_cuda:
        _check_cpu_memory(model.config, height, width, batch_size, views)
    if on_cuda:
        with torch.cuda.device(device):
            torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _max_rss_mb()
    predictor = Predictor(model, device=device, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs,
                          options=options)
    try:
        generator = torch.Generator(device).manual_seed(0)
        shape = (batch_size, 3, height, width)  # made on the device, in the model's dtype: no copies
        img1 = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        img2 = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    except torch.cuda.OutOfMemoryError:
        img1 = img2 = None
    if img1 is None:
        raise predictor._does_not_fit(batch_size, height, width)
    try:
        for _ in range(warmup):
            predictor(img1, img2)
        _sync(device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < runs or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            predictor(img1, img2)
            _sync(device)
            times.append(time.perf_counter() - t0)
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if on_cuda else _max_rss_mb()
    finally:
        predictor.release()
    per_image_ms = sorted(1000 * t / batch_size for t in times)
    median = statistics.median(per_image_ms)
    p90 = per_image_ms[min(len(per_image_ms) - 1, int(round(0.9 * (len(per_image_ms) - 1))))]
    images_per_s = 1000 / median
    return BenchResult(
        device=str(device), device_name=describe(device), torch_version=torch.__version__,
        threads=torch.get_num_threads(), dtype=DTYPE_NAMES.get(dtype, str(dtype)), batch_size=batch_size,
        height=height, width=width, weights=label, options=options, compile=compile,
        cuda_graphs=cuda_graphs and on_cuda, params=count_parameters(model), gflops_per_image=gflops,
        median_ms_per_image=median, p90_ms_per_image=p90, images_per_s=images_per_s,
        tflops_achieved=gflops * images_per_s / 1000, peak_memory_mb=peak_mb,
        peak_memory_note="torch.cuda.max_memory_allocated" if on_cuda
        else f"process max RSS (was {rss_before:.0f} MB before the model was moved)",
        runs=len(times), warmup=warmup)


def _check_cpu_memory(config: ModelConfig, height: int, width: int, batch: int, views: int = 1) -> None:
    """Refuse, instead of being killed by the OS, when activations clearly exceed free memory;
    each test-time view is one more image in the network's batch."""
    available = available_memory()
    if available is None:
        return
    padded = (-(-height // STRIDE) * STRIDE) * (-(-width // STRIDE) * STRIDE)
    # fp32 values per padded pixel, from peak RSS growth with ~10 % headroom (benchmarks/README.md)
    # the convex upsampler adds its logits, their softmax and its sums: ~22 per pixel (counted, not measured)
    estimate = 4 * batch * views * padded * (12 + 40 * config.width + (22 if config.upsampler == "convex" else 0))
    if estimate > available:
        raise OutOfMemoryError.for_input(height, width, batch, detail=f" (needs about {estimate / 2**30:.1f} GiB, "
                                                                    f"{available / 2**30:.1f} GiB free)")


def _max_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # not on Windows
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
