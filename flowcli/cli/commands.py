"""The command line: parses arguments, calls the Python API, draws progress and tables.

Nothing else imports this module. Heavy imports (torch) happen inside commands so --help is instant.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..training.config import PRESETS
from ..inference.options import TTA_VIEWS, InferenceOptions

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"flowcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Optical flow with FlowNetS: train, evaluate, predict, visualize and benchmark."""


# Options shared by several commands, defined once.
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N or auto.")]
WeightsOpt = Annotated[Optional[str], typer.Option(
    "--weights", "-w", help="Weights .safetensors (default: the shipped weights/flownets.safetensors; "
    "'random' = untrained, for smoke tests).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse a folder with incomplete triplets (default: warn and skip them).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON here.")]


class Dtype(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Weights/compute precision (fp16: CUDA only; bf16: CUDA or CPUs with native bf16).")]


Tta = Enum("Tta", {name: name for name in TTA_VIEWS}, type=str)
DEFAULTS = InferenceOptions()  # the one place --tta, --passes, --smooth and --refine take defaults from


TtaOpt = Annotated[Tta, typer.Option("--tta", help="Test-time augmentation: also predict the mirrored pair "
                                     "(hflip: 2x the time; hvflip: 3x) and average; lowers EPE (see README).")]


PassesOpt = Annotated[int, typer.Option("--passes", min=1, metavar="N", help="Run the network N times: each "
                                        "extra pass predicts the motion left after warping image 2 by the flow so "
                                        "far; lowers EPE, most on large motions (2 passes: ~2.2x the time; "
                                        "see README).")]


SmoothOpt = Annotated[bool, typer.Option("--smooth/--no-smooth", help="Smooth the flow along image 1's edges "
                                          "(a guided filter, a few ms per 384x512 image on 2 CPU cores; lowers EPE). "
                                          "--no-smooth gives the network's own bilinearly upsampled flow.")]


RefineOpt = Annotated[int, typer.Option("--refine", min=0, metavar="N", help="After the network, refine the flow "
                                        "with N Lucas-Kanade steps on the image pair: the first at half resolution "
                                        "(~5 ms per 384x512 image on 2 CPU cores), the others at full resolution "
                                        "after the smoothing (~12 ms each); 0 = off. Lowers EPE, most below 1 px "
                                        "(see README).")]


class Metric(str, Enum):
    epe = "epe"
    all = "all"


class SplitScheme(str, Enum):
    auto = "auto"
    official = "official"
    reference = "reference"
    seeded = "seeded"


# The recipes' names come from the one table of presets, so a new preset is offered without a second list.
Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)


def _options(tta: Tta, passes: int, smooth: bool, refine: int) -> InferenceOptions:
    return InferenceOptions(tta=tta.value, passes=passes, smooth=smooth, refine=refine)


def _extras(result: dict) -> str:
    """', tta hflip, passes 2, refine 2' for results computed with those options; '' for the defaults."""
    label = InferenceOptions.from_result(result).label()
    return f", {label}" if label else ""


@contextmanager
def cli_errors() -> Iterator[None]:
    """Expected failures become one red line on stderr and exit code 1; Ctrl-C exits 130."""
    from ..errors import FlowcliError

    try:
        yield
    except (FlowcliError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130)


def parse_size(text: str) -> tuple[int, int]:
    """'384x512' -> (384, 512), i.e. HEIGHTxWIDTH."""
    from ..training.config import parse_size as parse
    from ..errors import FlowcliError

    try:
        return parse(text)
    except ValueError as exc:
        raise FlowcliError(str(exc)) from None


def say(text: str, console: Console = out_console) -> None:
    """Print plain text: paths with brackets must not be read as rich markup."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def write_json(path: Path | None, payload) -> None:
    if path is None:
        return
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    say(f"wrote {path}", err_console)


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def table(title: str, rows: list[tuple[str, str]]) -> Table:
    result = Table(title=title, show_header=False, title_justify="left")
    result.add_column(style="bold")
    result.add_column(justify="right")
    for key, value in rows:
        result.add_row(escape(key), escape(value))
    return result


@app.command()
def predict(
    input1: Annotated[Path, typer.Argument(help="First image, or a folder of <id>_img1.* / <id>_img2.* pairs (of video frames with --sequence).")],
    input2: Annotated[Optional[Path], typer.Argument(help="Second image (omit when INPUT1 is a folder).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .flo or .png (a folder for folder input).")] = ...,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = Dtype.fp32,
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    max_side: Annotated[Optional[int], typer.Option(min=64, help="Downsize inputs whose longer side exceeds this.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Folder mode: write flo or png files.")] = "flo",
    sequence: Annotated[bool, typer.Option("--sequence", help="Folder mode: the folder holds video frames; "
                                           "write the flow from each frame to the next (frames in name "
                                           "order, frame2 before frame10) as <frame>_flow.<format>.")] = False,
) -> None:
    """Estimate optical flow from INPUT1 to INPUT2 and write it as .flo (exact) or .png (colour)."""
    with cli_errors():
        from ..errors import FlowcliError

        if sequence and not input1.is_dir():
            raise FlowcliError(f"{input1}: --sequence needs a folder of video frames")
        if input1.is_dir():
            from ..inference.predict import predict_folder

            with progress_bar() as bar:
                task = bar.add_task("predict", total=None, info="")
                result = predict_folder(input1, output, weights=weights, device=device, dtype=dtype.value,
                                        options=_options(tta, passes, smooth, refine), fmt=fmt, sequence=sequence,
                                        on_progress=lambda done, total: bar.update(task, completed=done, total=total))
            say(f"wrote {result['pairs']} flows to {result['out_dir']} "
                              f"({result['pairs_per_s']:.1f} pairs/s end to end)")
            return
        if input2 is None:
            raise FlowcliError(f"{input1}: give a second image, or a folder of image pairs")
        if output.suffix.lower() not in (".flo", ".png"):
            raise FlowcliError(f"{output}: output must end in .flo or .png")
        if not output.parent.is_dir():
            raise FlowcliError(f"{output}: output folder {output.parent} does not exist")
        from ..inference.predict import write_flow
        from ..inference.predict import estimate_flow

        flow = estimate_flow(input1, input2, weights=weights, device=device, dtype=dtype.value,
                             options=_options(tta, passes, smooth, refine), max_side=max_side)
        write_flow(output, flow)
        magnitude = (flow**2).sum(-1) ** 0.5
        say(f"wrote {output} ({flow.shape[1]}x{flow.shape[0]}, mean |flow| "
                          f"{magnitude.mean():.2f} px, max {magnitude.max():.2f} px)")


@app.command()
def visualize(
    flow: Annotated[Optional[Path], typer.Argument(help="A .flo file to colour-code.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .png.")] = ...,
    pair: Annotated[Optional[tuple[Path, Path]], typer.Option(help="Two images: draw a panel with them.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth .flo for the panel (adds GT and error map).")] = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    max_flow: Annotated[Optional[float], typer.Option(help="Flow magnitude shown fully saturated (default: the field's max).")] = None,
) -> None:
    """Colour-code a flow field, or draw image 1 | image 2 | ground truth | prediction | error."""
    with cli_errors():
        from ..errors import FlowcliError
        from ..io import read_flow, read_image_pair, write_image

        if output.suffix.lower() != ".png":
            raise FlowcliError(f"{output}: output must end in .png")
        if not output.parent.is_dir():
            raise FlowcliError(f"{output}: output folder {output.parent} does not exist")
        if pair is None:
            if flow is None:
                raise FlowcliError("give a .flo file, or --pair IMG1 IMG2 for a panel")
            from ..viz import flow_to_color

            field, valid = read_flow(flow)
            write_image(output, flow_to_color(field, max_flow=max_flow, valid=valid))
            say(f"wrote {output}")
            return
        from ..inference.predict import check_pair, estimate_flow
        from ..viz import panel

        img1, img2 = read_image_pair(*pair)
        if flow is not None:
            pred = read_flow(flow)[0]
        else:
            check_pair(img1, img2, tuple(map(str, pair)))
            pred = estimate_flow(img1, img2, weights=weights, device=device,
                                 options=_options(tta, passes, smooth, refine))
        truth, valid = read_flow(gt) if gt is not None else (None, None)
        for name, field in (("prediction", pred), ("ground truth", truth)):
            if field is not None and field.shape[:2] != img1.shape[:2]:
                raise FlowcliError(f"{name} is {field.shape[1]}x{field.shape[0]} but the images are "
                                   f"{img1.shape[1]}x{img1.shape[0]}")
        write_image(output, panel(img1, img2, pred, truth, valid))
        if truth is not None:
            from ..metrics import flow_metrics_np

            say(f"wrote {output} (EPE {flow_metrics_np(pred, truth, valid)['epe']:.3f} px)")
        else:
            say(f"wrote {output}")


@app.command()
def train(
    data_dir: Annotated[Optional[Path], typer.Argument(help="Flying Chairs folder; omit to train on generated data.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default: runs/<date-time>).")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help="Start from a named recipe (default: quick without DATA_DIR).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
    width: Annotated[Optional[float], typer.Option(help="FlowNetS channel multiplier (1.0 = paper).")] = None,
    crop: Annotated[Optional[str], typer.Option(help="Training crop HxW, multiples of 64, e.g. 320x448.")] = None,
    split: Annotated[Optional[SplitScheme], typer.Option(help="How to split DATA_DIR (reference = the reference's 80/20).")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Generated data: batches per epoch.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Time budget; the schedule is fitted to it.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Train without augmentation.")] = False,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder (its config is reused).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from these weights (their width and BatchNorm are kept).")] = None,
    freeze_bn: Annotated[bool, typer.Option("--freeze-bn", help="Keep BatchNorm statistics fixed (fine-tuning with --init at small batches).")] = False,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Data workers: loader processes for a folder; for generated data, any value > 0 generates the next batch in a background thread (for GPUs; on a 2-core CPU it is slower).")] = None,
    device: DeviceOpt = "auto",
    strict: StrictOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Train FlowNetS on a Flying Chairs folder, or on generated look-alike data by default."""
    with cli_errors():
        import time

        from ..checkpoint import read_config
        from ..training.config import TrainConfig
        from ..device import resolve_device
        from ..training.loop import train as run_training

        name = preset.value if preset else ("quick" if data_dir is None else None)
        config = (PRESETS[name] if name else TrainConfig()).with_overrides(
            epochs=epochs, batch_size=batch_size, lr=lr, width=width, seed=seed, minutes=minutes,
            crop=parse_size(crop) if crop else None, split=split.value if split else None,
            steps_per_epoch=steps_per_epoch, augment=False if no_augment else None, num_workers=workers,
            freeze_bn=True if freeze_bn else None)
        if init is not None:
            file_config = read_config(init)
            config = config.with_overrides(init=str(init), width=width or file_config.width,
                                           batch_norm=file_config.batch_norm)
        run_dir = resume or out or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
        torch_device = resolve_device(device)
        with progress_bar() as bar:
            task = bar.add_task("train", total=None, info="")

            def on_event(kind: str, info: dict) -> None:
                if kind == "start":
                    bar.update(task, total=(info["epochs"] - info["start_epoch"]) * info["steps_per_epoch"])
                    say(f"FlowNetS {info['params'] / 1e6:.2f}M params on {info['device']}, "
                        f"run folder {run_dir}", bar.console)
                elif kind == "step":
                    bar.update(task, advance=1, info=f"epoch {info['epoch']} loss {info['loss']:.3f} "
                               f"EPE {info['epe']:.2f} {info['images_per_s']:.1f} img/s")
                elif kind == "epoch":
                    bar.console.print(f"epoch {info['epoch']}: train EPE {info['train_epe']:.3f}, "
                                      f"val EPE {info.get('val_epe', float('nan')):.3f}, "
                                      f"{info['images_per_s']:.1f} img/s, data {100 * info['data_share']:.0f}% of step time")
                elif kind == "warning":
                    bar.console.print(f"[yellow]warning:[/] {escape(info['message'])}")

            try:
                summary = run_training(config, out_dir=run_dir, data_dir=data_dir, resume=resume is not None,
                                       device=torch_device, on_event=on_event, strict=strict)
            except KeyboardInterrupt:
                err_console.print(f"[yellow]interrupted[/]; continue with: flowcli train --resume {escape(str(run_dir))}")
                raise typer.Exit(130)
        out_console.print(table("training", [
            ("run folder", str(run_dir)), ("epochs", str(summary.get("epoch", "-"))),
            ("best val EPE", f"{summary['best_val_epe']:.3f}"),
            ("weights", str(Path(run_dir) / "best.safetensors"))]))
        write_json(json_out, summary)


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
                              options=_options(tta, passes, smooth, refine), count=count,
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
                 ("device", f"{result['device']} {result['dtype']}" + _extras(result))]
        if result["invalid_pixels"]:
            rows.append(("unknown-flow pixels (masked)", str(result["invalid_pixels"])))
        out_console.print(table("evaluation", rows))
        write_json(json_out, result)


@app.command()
def synth(
    out_dir: Annotated[Optional[Path], typer.Argument(help="Folder to write <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo.")] = None,
    count: Annotated[int, typer.Option(min=1, help="Number of pairs.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same pairs.")] = 0,
    size: Annotated[str, typer.Option(help="Image size HxW.")] = "384x512",
    textures: Annotated[Optional[Path], typer.Option(help="Folder of your own photos to use as textures.")] = None,
    bench: Annotated[bool, typer.Option("--bench", help="Measure generation speed instead of writing files.")] = False,
    device: DeviceOpt = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Allow writing into a folder that already holds pairs.")] = False,
) -> None:
    """Generate Flying-Chairs-style pairs with exact ground-truth flow (the embedded default data)."""
    with cli_errors():
        from ..device import resolve_device
        from ..errors import FlowcliError
        from ..data.synth import SynthConfig, measure_speed, write_dataset

        height, width = parse_size(size)
        try:
            scenes = SynthConfig(height=height, width=width)
        except ValueError as exc:
            raise FlowcliError(str(exc)) from None
        torch_device = resolve_device(device)
        if bench:
            result = measure_speed(device=torch_device, batch_size=16, height=height, width=width, seconds=5.0)
            out_console.print(table("generator speed", [(k, f"{v:.1f}" if isinstance(v, float) else str(v))
                                                         for k, v in result.items()]))
            return
        if out_dir is None:
            raise FlowcliError("give an output folder (or --bench)")
        with progress_bar() as bar:
            task = bar.add_task("synth", total=count, info="")
            ids = write_dataset(out_dir, count=count, seed=seed, config=scenes,
                                textures_dir=textures, overwrite=overwrite,
                                on_progress=lambda done: bar.update(task, completed=done))
        say(f"wrote {len(ids)} pairs ({width}x{height}) to {out_dir}")


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

        options = _options(tta, passes, smooth, refine)
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
                      + _extras(result)),
            ("median ms/img", f"{result['median_ms_per_image']:.3f}"), ("p90 ms/img", f"{result['p90_ms_per_image']:.3f}"),
            ("images/s", f"{result['images_per_s']:.1f}"), ("GFLOP/img", f"{result['gflops_per_image']:.2f}"),
            ("achieved TFLOP/s", f"{result['tflops_achieved']:.3f}"), ("peak memory", f"{result['peak_memory_mb']:.0f} MB"),
            ("reference", f"{1000 * result['reference_s_per_image']:.1f} ms/img -> {result['speedup_vs_reference']:.2f}x"),
        ]))
        write_json(json_out, result)


@app.command()
def info(weights: WeightsOpt = None) -> None:
    """Show a weights file's architecture, parameter count and training metadata."""
    with cli_errors():
        from ..checkpoint import DEFAULT_WEIGHTS, load_model, metadata_json
        from ..errors import FlowcliError

        if weights == "random":
            raise FlowcliError("info describes a weights file; 'random' has none")
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        model = load_model(path)
        meta = metadata_json(path)
        rows = [("file", str(path)), ("size", f"{path.stat().st_size / 2**20:.2f} MiB"),
                ("parameters", f"{sum(p.numel() for p in model.parameters()):,}")]
        rows += [(key, json.dumps(value) if not isinstance(value, str) else value) for key, value in meta.items()]
        out_console.print(table("weights", rows))
