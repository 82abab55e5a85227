"""`flowcli eval`: EPE, accuracy and time per image of weights on a folder or the generated test set."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.splits import EVERY_PAIR, PARTS, SCHEMES
from .common import (
    DEFAULTS, DeviceOpt, Dtype, DtypeOpt, JsonOpt, PassesOpt, RefineOpt, SmoothOpt, StrictOpt, Tta, TtaOpt, WeightsOpt,
    app, check_json_path, cli_errors, inference_options, options_label, out_console, progress_bar, table, warn,
    write_json,
)


class Metric(str, Enum):
    epe = "epe"
    all = "all"


Part = Enum("Part", {name: name for name in PARTS}, type=str)
EvalSplit = Enum("EvalSplit", {name: name for name in (*SCHEMES, EVERY_PAIR)}, type=str)


@app.command(name="eval")
def evaluate_command(
    data_dir: Annotated[Optional[Path], typer.Argument(help="Flying Chairs folder; omit for the generated test set.")] = None,
    split: Annotated[EvalSplit, typer.Option(help="How the folder is split (auto: the run's split.json, else official or seeded); all: every pair.")] = EvalSplit.auto,
    part: Annotated[Part, typer.Option(help="Which part of the split to evaluate.")] = Part.test,
    weights: WeightsOpt = None,
    metric: Annotated[Metric, typer.Option(help="epe: EPE and time; all: also accuracy, EPE by speed and in/out of frame.")] = Metric.all,
    device: DeviceOpt = "auto",
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
    """Report EPE (the reference's mean_epe), accuracy and the model's time per image."""
    with cli_errors():
        from ..inference.evaluate import evaluate

        check_json_path(json_out)
        with progress_bar() as bar:
            task = bar.add_task("eval", total=None, info="")
            result = evaluate(data_dir, split=split.value, part=part.value, seed=seed, weights=weights,
                              device=device, dtype=dtype.value, options=inference_options(tta, passes, smooth, refine),
                              count=count, strict=strict,
                              on_progress=lambda done, total: bar.update(task, completed=done, total=total))
        for line in result.incomplete_triplets[:5]:
            warn(f"incomplete triplet skipped: {line}")
        out_console.print(table("evaluation", result_rows(result, everything=metric == Metric.all)))
        write_json(json_out, result)


def result_rows(result, *, everything: bool) -> list[tuple[str, str]]:
    px = lambda value: "-" if value is None else f"{value:.3f} px"  # noqa: E731
    rows = [("data", result.source), ("weights", result.weights), ("pairs", str(result.pairs)),
            ("EPE", px(result.epe))]
    if everything:
        rows += [(f"< {name}", f"{100 * share:.1f}%") for name, share in result.within.items()]
        rows += [(f"EPE {band}", px(value)) for band, value in result.epe_by_speed.items()]
        shares = {"in-frame": 1 - result.out_of_frame_share, "out-of-frame": result.out_of_frame_share}
        rows += [(f"EPE {name} ({100 * shares[name]:.1f}% of pixels)", px(value))
                 for name, value in result.epe_by_frame.items()]
    rows += [("time per image", f"{result.ms_per_image:.2f} ms (median {result.median_ms_per_image:.2f})"),
             ("device", f"{result.device} {result.dtype}" + options_label(result.options))]
    if result.invalid_pixels:
        rows.append(("unknown-flow pixels (masked)", str(result.invalid_pixels)))
    return rows
