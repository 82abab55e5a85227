"""`flowcli bench`: time the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..inference.options import InferenceOptions
from .common import (
    app, out_console, DeviceOpt, WeightsOpt, JsonOpt, Dtype, DtypeOpt, Tta, DEFAULTS, TtaOpt, PassesOpt, SmoothOpt, RefineOpt, inference_options, options_label, cli_errors, parse_size, write_json, table,
)


@app.command()
def bench(
    device: DeviceOpt = "cpu",
    size: Annotated[str, typer.Option(help="Input size HxW.")] = "384x512",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 1,
    dtype: DtypeOpt = Dtype.fp32,
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile.")] = False,
    weights: WeightsOpt = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs (after warm-up).")] = 30,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: torch's choice).")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Batch sizes 1..256 x sizes 384x512, 768x1024, 1080x1920.")] = False,
    json_out: JsonOpt = None,
) -> None:
    """Time the model (warm-up excluded, CUDA synchronised) and compare with the reference 0.0107 s/img."""
    with cli_errors():
        from ..inference.bench import run_bench, run_sweep

        options = inference_options(tta, passes, smooth, refine)
        if sweep:
            rows = run_sweep(device=device, dtype=dtype.value, weights=weights, compile=compile, runs=runs,
                             options=options)
            result_table = Table(title="bench sweep", title_justify="left")
            for column in ("size", "batch", "ms/img (median)", "img/s", "TFLOP/s", "peak MB", "note"):
                result_table.add_column(column, justify="right")
            for row in rows:
                result_table.add_row(f"{row['height']}x{row['width']}", str(row["batch_size"]),
                                     f"{row.get('median_ms_per_image', float('nan')):.3f}",
                                     f"{row.get('images_per_s', float('nan')):.1f}",
                                     f"{row.get('tflops_achieved', float('nan')):.2f}",
                                     f"{row.get('peak_memory_mb', float('nan')):.0f}", row.get("skipped", ""))
            out_console.print(result_table)
            write_json(json_out, rows)
            return
        result = run_bench(device=device, size=parse_size(size), batch_size=batch_size, dtype=dtype.value,
                           compile=compile, weights=weights, runs=runs, threads=threads, options=options)
        out_console.print(table("bench", [
            ("device", f"{result['device_name']} ({result['device']})"),
            ("torch / threads", f"{result['torch_version']} / {result['threads']}"),
            ("weights", str(result["weights"])), ("params", f"{result['params'] / 1e6:.2f}M"),
            ("input", f"{result['batch_size']} x {result['height']}x{result['width']} {result['dtype']}"
                      + options_label(InferenceOptions.from_result(result))),
            ("median ms/img", f"{result['median_ms_per_image']:.3f}"), ("p90 ms/img", f"{result['p90_ms_per_image']:.3f}"),
            ("images/s", f"{result['images_per_s']:.1f}"), ("GFLOP/img", f"{result['gflops_per_image']:.2f}"),
            ("achieved TFLOP/s", f"{result['tflops_achieved']:.3f}"), ("peak memory", f"{result['peak_memory_mb']:.0f} MB"),
            ("reference", f"{1000 * result['reference_s_per_image']:.1f} ms/img -> {result['speedup_vs_reference']:.2f}x"),
        ]))
        write_json(json_out, result)
