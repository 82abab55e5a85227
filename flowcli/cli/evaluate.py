"""`flowcli eval`: evaluate weights: EPE, accuracy, time per image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..inference.options import InferenceOptions
from .common import (
    app, out_console, err_console, DeviceOpt, WeightsOpt, StrictOpt, JsonOpt, Dtype, DtypeOpt, Tta, SplitScheme, DEFAULTS, TtaOpt, PassesOpt, SmoothOpt, RefineOpt, inference_options, options_label, cli_errors, write_json, progress_bar, table,
)


class Metric(str, Enum):
    epe = "epe"
    all = "all"


@app.command(name="eval")
def evaluate_command(
    data_dir: Annotated[Optional[Path], typer.Argument(help="Flying Chairs folder; omit for the generated test set.")] = None,
    split: Annotated[str, typer.Option(help="Part to evaluate: test, val, train, all; 'reference' = the reference's 20% test part.")] = "test",
    scheme: Annotated[SplitScheme, typer.Option(help="How the folder is split (auto reuses the run's split.json).")] = SplitScheme.auto,
    weights: WeightsOpt = None,
    metric: Annotated[Metric, typer.Option(help="epe: EPE and time only; all: also 1/3/5 px accuracy, EPE by speed and in/out of frame.")] = Metric.all,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = Dtype.fp32,
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    count: Annotated[int, typer.Option(min=1, help="Generated test set: number of pairs.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of a seeded split.")] = 0,
    strict: StrictOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Report EPE (the reference's mean_epe), accuracy and model time per image."""
    with cli_errors():
        from ..inference.evaluate import evaluate

        if split == "reference":
            split, scheme = "test", SplitScheme.reference
        with progress_bar() as bar:
            task = bar.add_task("eval", total=None, info="")
            result = evaluate(data_dir=data_dir, part=split, scheme=scheme.value, seed=seed, weights=weights,
                              device=device, dtype=dtype.value,
                              options=inference_options(tta, passes, smooth, refine), count=count,
                              strict=strict, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
        for line in result["incomplete_triplets"][:5]:
            err_console.print(f"[yellow]warning:[/] incomplete triplet skipped: {escape(line)}")
        rows = [("data", result["source"]), ("weights", result["weights"]), ("pairs", str(result["pairs"])),
                ("EPE", f"{result['epe']:.3f} px")]
        if metric == Metric.all:
            from ..metrics import FRAME_PARTS, SPEED_BANDS

            rows += [(f"< {t}", f"{100 * result[t]:.1f}%") for t in ("1px", "3px", "5px")]
            rows += [(f"EPE {band}", "-" if result[band] is None else f"{result[band]:.3f} px")
                     for band in SPEED_BANDS]
            share = dict(zip(FRAME_PARTS, (1 - result["out_of_frame_share"], result["out_of_frame_share"])))
            rows += [(f"EPE {part} ({100 * share[part]:.1f}% of pixels)",
                      "-" if result[part] is None else f"{result[part]:.3f} px") for part in FRAME_PARTS]
        rows += [("time per image", f"{result['ms_per_image']:.2f} ms (median {result['median_ms_per_image']:.2f})"),
                 ("device", f"{result['device']} {result['dtype']}" + options_label(InferenceOptions.from_result(result)))]
        if result["invalid_pixels"]:
            rows.append(("unknown-flow pixels (masked)", str(result["invalid_pixels"])))
        out_console.print(table("evaluation", rows))
        write_json(json_out, result)
