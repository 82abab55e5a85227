"""`flowcli eval`: EPE, accuracy and time per image of weights on a folder or the generated test set."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.splits import EVERY_PAIR, PARTS, SCHEMES
from .common import (Backend, BackendOpt, DEFAULTS, DeviceOpt, Dtype, DtypeOpt, FbCheckOpt, JsonOpt, Layout,
                     LayoutOpt, Motion, OverwriteOpt, PassesOpt, RefineOpt, SintelPass, SintelPassOpt,
                     SmoothOpt, StrictOpt, Tta, TtaOpt, WeightsOpt, app, check_json_path, cli_errors, fail,
                     given_flags, inference_options, options_label, out_console, progress_bar,
                     reuse_freed_memory, say, table, warn, write_json)


class Metric(str, Enum):
    epe = "epe"
    all = "all"


class Report(str, Enum):
    reference = "reference"


Part = Enum("Part", {name: name for name in PARTS}, type=str)
EvalSplit = Enum("EvalSplit", {name: name for name in (*SCHEMES, EVERY_PAIR)}, type=str)


@app.command(name="eval")
def evaluate_command(
    ctx: typer.Context,
    data_dir: Annotated[Optional[Path], typer.Argument(metavar="DATA_DIR", help="Dataset folder (Flying Chairs, Sintel, KITTI, ... see --layout) or pairs.txt; omit for the generated test set.")] = None,
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
    backend: BackendOpt = Backend(DEFAULTS.backend),
    count: Annotated[int, typer.Option(min=1, help="Generated test set: number of pairs.")] = 64,
    seed: Annotated[Optional[int], typer.Option(help="Seed of a seeded split of DATA_DIR (default 0; other generated scenes: --scene-seed).")] = None,
    motion: Annotated[Optional[Motion], typer.Option(help="Generated test set: chairs (Flying Chairs' motions, the default) or wide (large, turning in depth).")] = None,
    scene_seed: Annotated[Optional[int], typer.Option(help="Generated test set: other scenes (e.g. 99; default: the test set's seed, 2024113).")] = None,
    strict: StrictOpt = False,
    report: Annotated[Optional[Report], typer.Option(help="reference: EPE on both parts of the reference split and time per image, beside its 8.04 / 7.0 / 0.0107 s.")] = None,
    json_out: JsonOpt = None,
    overwrite: OverwriteOpt = False,
    layout: LayoutOpt = Layout.auto,
    sintel_pass: SintelPassOpt = SintelPass.clean,
    fb_check: FbCheckOpt = False,
) -> None:
    """Report EPE (the reference's mean_epe), accuracy and the model's time per image."""
    with cli_errors():
        from ..errors import FlowcliError
        from ..inference.evaluate import evaluate

        check_json_path(json_out, overwrite, (weights, data_dir))
        options = inference_options(tta, passes, smooth, refine, backend)
        reuse_freed_memory(device)
        if report is not None:
            if split not in (EvalSplit.auto, EvalSplit.reference):
                raise FlowcliError(f"--report reference evaluates the reference split; leave --split {split.value} out")
            ignored = ("part", "count", "seed", "motion", "scene_seed", "layout", "sintel_pass", "fb_check", "metric")
            if given := given_flags(ctx, ignored):
                raise FlowcliError(f"--report reference evaluates both parts of the reference split as the "
                                   f"reference did; {', '.join(given)} would be ignored: leave it out")
            reference_table(data_dir, weights=weights, device=device, dtype=dtype.value, options=options,
                            strict=strict, json_out=json_out)
            return
        with progress_bar() as bar:
            task = bar.add_task("eval", total=None, info="")
            scenes = generated_scenes(ctx, data_dir, motion, scene_seed)
            result = evaluate(data_dir, split=split.value, part=part.value, seed=seed or 0, weights=weights,
                              device=device, dtype=dtype.value, options=options,
                              count=count, strict=strict, layout=layout.value, sintel_pass=sintel_pass.value,
                              fb_check=fb_check, **scenes,
                              on_progress=lambda done, total: bar.update(task, completed=done, total=total))
        write_json(json_out, result)  # first: the results are kept whatever becomes of the terminal
        for line in result.incomplete_triplets[:5]:
            warn(f"incomplete triplet skipped: {line}")
        out_console.print(table("evaluation", result_rows(result, everything=metric == Metric.all)))
        if result.scenes:
            out_console.print(scene_table(result))


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
    rows += occlusion_rows(result) if everything or result.fb_check else []  # asked-for check: always shown
    rows += [("time per image", f"{result.ms_per_image:.2f} ms (median {result.median_ms_per_image:.2f})"),
             ("device", f"{result.device} {result.dtype}" + options_label(result.options))]
    if result.invalid_pixels:
        rows.append(("unknown-flow pixels (masked)", str(result.invalid_pixels)))
    if everything and result.fl_all == result.fl_all:  # not NaN
        rows.insert(4, ("Fl-all (EPE > 3 px and > 5%)", f"{100 * result.fl_all:.2f}%"))
    return rows


def scene_table(result):
    """Per-scene EPE and Fl-all (Sintel), one row a scene."""
    from rich.markup import escape
    from rich.table import Table

    shown = Table(title="per scene", title_justify="left")
    for column in ("scene", "pairs", "EPE", "Fl-all"):
        shown.add_column(column, justify="left" if column == "scene" else "right")
    for scene in result.scenes:
        shown.add_row(escape(scene.scene), str(scene.pairs), f"{scene.epe:.3f} px", f"{100 * scene.fl_all:.2f}%")
    return shown


def occlusion_rows(result) -> list[tuple[str, str]]:
    """EPE over non-occluded pixels where the true occlusion is known; the check's mask scores."""
    if result.epe_noc is None:
        return []
    rows = [(f"EPE noc ({100 * (1 - result.occluded_share):.1f}% of pixels)", f"{result.epe_noc:.3f} px")]
    check = result.occlusion_check
    if check:
        score = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
        rows.append(("mask precision/recall/F1",
                     f"{score(check['precision'])} / {score(check['recall'])} / {score(check['f1'])}"))
        rows.append(("mask marked / truly occluded",
                     f"{100 * check['predicted_share']:.1f}% / {100 * result.occluded_share:.1f}%"))
    return rows


def generated_scenes(ctx: typer.Context, data_dir, motion, scene_seed) -> dict:
    """evaluate()'s motion= and scene_seed= as given. The options of the other kind of data would be
    ignored, so they are refused: a folder's (split, layout) without one, the generated set's with one."""
    if data_dir is None:
        if given := given_flags(ctx, ("split", "part", "seed", "layout", "sintel_pass")):
            fail(f"{' and '.join(given)}: for a folder (DATA_DIR); the generated test set has no split "
                 "(other generated scenes: --scene-seed)")
    elif given := given_flags(ctx, ("count", "motion", "scene_seed")):
        fail(f"{' and '.join(given)}: for the generated test set; {data_dir} has its own pairs")
    given = {"motion": motion.value if motion else None, "scene_seed": scene_seed}
    return {k: v for k, v in given.items() if v is not None}


def reference_table(data_dir, *, weights, device, dtype, options, strict, json_out) -> None:
    from rich.table import Table

    from ..inference.report import reference_report

    with progress_bar() as bar:
        task = bar.add_task("eval", total=None, info="")
        result = reference_report(data_dir, weights=weights, device=device, dtype=dtype, options=options,
                                  strict=strict, on_progress=lambda part, done, total: bar.update(
                                      task, completed=done, total=total, description=f"eval {part}"))
    write_json(json_out, result)
    ref = result.reference
    shown = Table(title=f"the reference's table ({result.data}, reference split)", title_justify="left")
    for column in ("", "EPE train-val", "EPE test", "time per image"):
        shown.add_column(column, justify="right")
    shown.add_row(f"{result.weights}{options_label(options)}", f"{result.train_epe:.3f}", f"{result.test_epe:.3f}",
                  f"{result.s_per_image:.4f} s ({result.device} {result.dtype})")
    shown.add_row("reference (its data and hardware)", f"{ref['train_epe']:.2f}", f"{ref['test_epe']:.1f}",
                  f"{ref['s_per_image']:.4f} s")
    out_console.print(shown)
    say(f"{result.train_pairs} train / {result.test_pairs} test pairs; the reference reported its network "
        "alone (--refine 0 --no-smooth compares like with like)")
