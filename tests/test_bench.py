"""The benchmark API: result fields, analytic FLOPs, sweeps with skipped points, refusals."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from flowcli.checkpoint import DEFAULT_WEIGHTS, read_config
from flowcli.inference import bench
from flowcli.inference.bench import markdown_table, run_bench, run_sweep
from flowcli.errors import DeviceError, OutOfMemoryError
from flowcli.inference.options import InferenceOptions
from flowcli.model import FlowNetS, ModelConfig, conv_gflops

TINY = dict(size=(64, 64), weights="random", model_width=0.125, warmup=1, runs=3)


@pytest.fixture
def batch_times(monkeypatch):
    """`batch_times(*seconds)`: bench's clock stands still except that each Predictor call (warm-up
    included) moves it on by the next of `seconds`: the figures follow from them, not from this
    machine's speed. The real Predictor still runs."""
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock.now))

    def durations(*seconds: float) -> None:
        left = iter(seconds)

        class Timed(bench.Predictor):
            def __call__(self, img1, img2):
                flow = super().__call__(img1, img2)
                clock.now += next(left)
                return flow

        monkeypatch.setattr(bench, "Predictor", Timed)

    return durations


def test_run_bench_reports_every_field_with_sane_values(batch_times):
    # a batch of 2: a slow warm-up (not timed), then 30, 10 and 20 ms; a 4th timed run would take 1 s
    batch_times(5.0, 0.030, 0.010, 0.020, 1.0)
    before = torch.get_num_threads()  # conftest sets 1 thread: ask for another number
    result = run_bench(device="cpu", batch_size=2, threads=before + 1, **TINY)
    assert torch.get_num_threads() == before  # threads applies to the run only
    assert result.device == "cpu" and result.dtype == "fp32" and result.threads == before + 1
    assert (result.batch_size, result.height, result.width) == (2, 64, 64)
    assert result.weights == "random" and result.compile is False
    tiny = ModelConfig(width=0.125, batch_norm=True, upsampler="convex")  # the shipped architecture, narrower
    assert result.params == sum(p.numel() for p in FlowNetS(tiny).parameters())
    assert result.gflops_per_image == pytest.approx(conv_gflops(tiny, 64, 64))
    assert (result.runs, result.warmup) == (3, 1)
    # per image: 15, 5 and 10 ms; the median 10, the 90th percentile the slowest of three
    assert result.median_ms_per_image == pytest.approx(10.0)
    assert result.p90_ms_per_image == pytest.approx(15.0)
    assert result.images_per_s == pytest.approx(100.0)
    assert result.tflops_achieved == pytest.approx(result.gflops_per_image * 100 / 1000)
    assert result.peak_memory_mb > 0
    assert result.speedup_vs_reference == pytest.approx(10.7 / 10.0)  # 10.7 ms per image against 10
    saved = json.loads(result.to_json())
    assert saved["speedup_vs_reference"] == pytest.approx(result.speedup_vs_reference)
    assert saved["options"] == {"tta": "none", "passes": 1, "smooth": True, "refine": 1, "backend": "torch"}


def test_runs_go_on_until_min_seconds_have_passed(batch_times):
    """At least `runs` timed runs, and more while less than `min_seconds` have passed since the warm-up."""
    batch_times(5.0, *[0.020] * 10)  # the warm-up, then 20 ms a run: 0.05 s have passed during the 3rd
    result = run_bench(device="cpu", min_seconds=0.05, **{**TINY, "runs": 1})
    assert result.runs == 3 and result.median_ms_per_image == pytest.approx(20.0)


def test_gflops_count_every_view_and_pass():
    plain = run_bench(device="cpu", **TINY)
    more = run_bench(device="cpu", options=InferenceOptions(tta="hflip", passes=2), **TINY)
    assert more.gflops_per_image == pytest.approx(4 * plain.gflops_per_image)


def test_sweep_honours_threads():
    before = torch.get_num_threads()
    rows = run_sweep(device="cpu", sizes=[(64, 64)], batch_sizes=[1], weights="random", model_width=0.125,
                     warmup=0, runs=1, threads=before + 1)
    assert rows[0].threads == before + 1 and torch.get_num_threads() == before


def test_random_weights_without_a_width_are_the_shipped_default_architecture():
    result = run_bench(device="cpu", size=(64, 64), weights="random", warmup=0, runs=1)
    shipped = read_config(DEFAULT_WEIGHTS)
    assert result.params == sum(p.numel() for p in FlowNetS(shipped).parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        run_bench(device="cuda", **TINY)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(DeviceError, match="fp16 needs device=cuda"):
        run_bench(device="cpu", dtype="fp16", **TINY)


def test_sizes_below_64_are_refused():
    with pytest.raises(DeviceError, match="size=32x64: height and width must be at least 64"):
        run_bench(device="cpu", **{**TINY, "size": (32, 64)})
    with pytest.raises(DeviceError, match="at least 64"):
        run_sweep(device="cpu", sizes=[(64, 48)], batch_sizes=[1], weights="random")


def test_sweep_skips_what_does_not_fit(monkeypatch):
    # batch 1 of 64x64 at width 0.25 with the convex upsampler needs ~0.72 MB by the estimate, batch 2 twice that
    monkeypatch.setattr(bench, "available_memory", lambda: 1_000_000)
    rows = run_sweep(device="cpu", sizes=[(64, 64)], batch_sizes=[4, 1, 2], weights="random",
                     model_width=0.25, warmup=0, runs=2)
    assert [r.batch_size for r in rows] == [1, 2, 4]
    assert not hasattr(rows[0], "skipped") and rows[0].median_ms_per_image > 0
    assert "does not fit in memory at batch 2" in rows[1].skipped
    assert "batch 2 already did not fit" in rows[2].skipped
    table = markdown_table(rows)
    assert table.count("\n| 64x64 |") == 3 and "skipped: input 64x64" in table


def test_sweep_script_writes_a_markdown_table(tmp_path, capsys, load_benchmark):
    module = load_benchmark("sweep")
    out = tmp_path / "results.md"
    code = module.main(["--device", "cpu", "--batch-sizes", "1", "--sizes", "64x64", "--weights", "random",
                        "--model-width", "0.25", "--warmup", "1", "--runs", "2", "--threads", "2", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "benchmarks/sweep.py --device cpu" in text and "| 64x64 | 1 |" in text
    assert "2 torch threads" in text  # the sweep's, not the caller's one (conftest)
    assert "sweep.py" in capsys.readouterr().out
    assert module.main(["--device", "cpu", "--dtype", "fp16", "--out", str(out)]) == 1
    assert "needs device=cuda" in capsys.readouterr().err


def test_a_sweep_stops_at_a_failure_that_is_not_memory(monkeypatch):
    def compile_fails(*_, **__):
        raise DeviceError("compile=True failed (BackendCompilerFailed: no compiler); run without it")

    monkeypatch.setattr(bench, "_measure", compile_fails)
    with pytest.raises(DeviceError, match="compile=True failed"):  # not a row per batch saying it did not fit
        run_sweep(device="cpu", sizes=[(64, 64)], batch_sizes=[1, 2], weights="random")


def test_the_memory_check_counts_views_but_names_the_batch_asked_for(monkeypatch):
    from flowcli.model import ModelConfig

    config = ModelConfig(width=0.25)
    one_view = 4 * 2 * 64 * 64 * (12 + 40 * 0.25)  # batch 2, one 64x64 view: the estimate's bytes
    monkeypatch.setattr(bench, "available_memory", lambda: int(2 * one_view))
    bench._check_cpu_memory(config, 64, 64, 2, views=1)
    with pytest.raises(OutOfMemoryError, match=r"input 64x64 does not fit in memory at batch 2 \(needs about"):
        bench._check_cpu_memory(config, 64, 64, 2, views=3)


def test_sweep_refuses_the_size_and_batch_it_would_ignore(run_cli):
    result = run_cli("bench", "--sweep", "--batch-size", "1", "--weights", "random")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "--batch-size: --sweep times its own grid of sizes and batches; leave it out" in result.stderr


def test_the_cli_table_names_the_weights_and_says_which_way_the_reference_ratio_goes(run_cli, tmp_path):
    result = run_cli("bench", "--device", "cpu", "--size", "64x64", "--runs", 1, "-w", "random",
                     "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["weights"] == "random"
    ratio = saved["speedup_vs_reference"]  # the reference's 10.7 ms over this run's median
    assert f"10.7 ms/img; this run {ratio:.2f}x as fast" in result.output
