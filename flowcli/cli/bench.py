"""`flowcli bench`: time the model with its pipeline on random frames, one configuration or a grid."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import (Backend, BackendOpt, DEFAULTS, DeviceOpt, Dtype, DtypeOpt, JsonOpt, OverwriteOpt,
                     PassesOpt, RefineOpt, SmoothOpt, Tta, TtaOpt, WeightsOpt, app, check_json_path,
                     cli_errors, fail, given_flags, inference_options, options_label, out_console, parse_size,
                     reuse_freed_memory, table, write_json)


@app.command()
def bench(
    ctx: typer.Context,
    device: DeviceOpt = "auto",
    size: Annotated[str, typer.Option(metavar="HxW", help="Input size, height x width.")] = "384x512",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 1,
    dtype: DtypeOpt = Dtype.fp32,
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    backend: BackendOpt = Backend(DEFAULTS.backend),
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile (needs a C++ compiler, or Triton on CUDA).")] = False,
    weights: WeightsOpt = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs (after warm-up).")] = 30,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads (default: torch's choice).")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Time the device's grid of batch sizes x sizes (CPU: 1-4 x 2 sizes; CUDA: 1-256 x 3 sizes) instead of --size/--batch-size.")] = False,
    json_out: JsonOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Time the model (warm-up excluded, CUDA synchronised) against the reference's 0.0107 s per image."""
    with cli_errors(out_of_memory="size=HxW, batch_size=N"):
        from ..inference.bench import run_bench, run_sweep

        check_json_path(json_out, overwrite, (weights,))
        options = inference_options(tta, passes, smooth, refine, backend)
        reuse_freed_memory(device)  # what the CLI's other commands do: the times are theirs
        if sweep:
            if given := given_flags(ctx, ("size", "batch_size")):
                fail(f"{' and '.join(given)}: --sweep times its own grid of sizes and batches; leave "
                     f"{'them' if len(given) > 1 else 'it'} out")
            rows = run_sweep(device=device, dtype=dtype.value, weights=weights, compile=compile, runs=runs,
                             threads=threads, options=options)
            write_json(json_out, [row.as_dict() for row in rows])
            out_console.print(sweep_table(rows))
            return
        result = run_bench(device=device, size=parse_size(size), batch_size=batch_size, dtype=dtype.value,
                           compile=compile, weights=weights, runs=runs, threads=threads, options=options)
        write_json(json_out, result)
        out_console.print(table("bench", [
            ("device", f"{result.device_name} ({result.device})"),
            ("torch / threads", f"{result.torch_version} / {result.threads}"),
            ("weights", result.weights), ("params", f"{result.params / 1e6:.2f}M"),
            ("input", f"{result.batch_size} x {result.height}x{result.width} {result.dtype}" + options_label(result.options)),
            ("median ms/img", f"{result.median_ms_per_image:.3f}"), ("p90 ms/img", f"{result.p90_ms_per_image:.3f}"),
            ("images/s", f"{result.images_per_s:.1f}"), ("GFLOP/img (network)", f"{result.gflops_per_image:.2f}"),
            ("achieved TFLOP/s", f"{result.tflops_achieved:.3f}"), ("peak memory", f"{result.peak_memory_mb:.0f} MB"),
            ("reference", f"{1000 * result.reference_s_per_image:.1f} ms/img; this run {result.speedup_vs_reference:.2f}x as fast"),
        ]))


def sweep_table(rows) -> Table:
    result = Table(title="bench sweep", title_justify="left")
    for column in ("size", "batch", "ms/img (median)", "img/s", "TFLOP/s", "peak MB", "note"):
        result.add_column(column, justify="right")
    for row in rows:
        size = f"{row.height}x{row.width}"
        if hasattr(row, "skipped"):
            result.add_row(size, str(row.batch_size), "-", "-", "-", "-", row.skipped)
        else:
            result.add_row(size, str(row.batch_size), f"{row.median_ms_per_image:.3f}", f"{row.images_per_s:.1f}",
                           f"{row.tflops_achieved:.2f}", f"{row.peak_memory_mb:.0f}", "")
    return result
