"""`flowcli train`: train FlowNetS on a folder or on generated data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..data.splits import SCHEMES
from .common import (Arch, DeviceOpt, JsonOpt, Layout, Loss, OverwriteOpt, Preset, SintelPass, StrictOpt,
                     TrainMotion, Upsampler, app, check_json_path, cli_errors, err_console, fail, out_console,
                     parse_size, progress_bar, reuse_freed_memory, say, table, write_json)


@app.command()
def train(
    data_dir: Annotated[Optional[Path], typer.Argument(metavar="DATA_DIR", help="Dataset folder with ground truth (Flying Chairs, Sintel, KITTI, ... see --layout) or pairs.txt; omit to train on generated data.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", "--out", help="Run folder (default: runs/train-<date-time>).")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help="Start from a named recipe (default: quick without DATA_DIR).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (with --resume: extend the run to this many).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
    width: Annotated[Optional[float], typer.Option(help="FlowNetS channel multiplier (1.0 = paper).")] = None,
    arch: Annotated[Optional[Arch], typer.Option(help="Network: flownets (the paper's) or reference (the baseline's, no conv6_1/flow6).")] = None,
    batch_norm: Annotated[Optional[bool], typer.Option("--batch-norm/--no-batch-norm", help="BatchNorm after each conv (default: the preset's).")] = None,
    loss: Annotated[Optional[Loss], typer.Option(help="multiscale (FlowNet's weighted levels) or epe (full-resolution EPE, the reference's).")] = None,
    upsampler: Annotated[Optional[Upsampler], typer.Option(help="flow2 (1/4 resolution) to full resolution: bilinear (the paper's) or convex (a learned head; with --init FILE it is added, starting as bilinear).")] = None,
    crop: Annotated[Optional[str], typer.Option(metavar="HxW", help="Training crop, multiples of 64, e.g. 320x448.")] = None,
    split: Annotated[Optional[str], typer.Option(metavar="SCHEME", help=f"How to split DATA_DIR: {', '.join(SCHEMES)} (reference = the reference's 80/20).")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Generated data: batches per epoch.")] = None,
    synth_motion: Annotated[Optional[TrainMotion], typer.Option("--motion", help="Generated data: chairs (Flying Chairs' motions, the default), wide (large, turning in depth) or mixed (alternate batches); validation stays chairs.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Time budget; the schedule is fitted to it (with --resume: extend it).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed of the model's start, the data's order and augmentation, generated scenes, and "
                                                    "a folder's seeded split (which eval repeats from the run's split.json).")] = None,
    augment: Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="Augment the training pairs (default: the preset's).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder with its saved settings.")] = None,
    init: Annotated[Optional[str], typer.Option(metavar="FILE|NAME", help="Fine-tune: start from these weights, a file or a shipped network (fast, accurate). Their BatchNorm is kept, and their width unless --width is a whole multiple of it: the network is then grown to it, computing the same flow at the start.")] = None,
    freeze_bn: Annotated[bool, typer.Option("--freeze-bn", help="Keep BatchNorm statistics fixed (fine-tuning with --init at small batches).")] = False,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="Train the convex upsampler's head only; the network it reads stays as --init gave it (BatchNorm too).")] = False,
    ema: Annotated[Optional[float], typer.Option("--ema", metavar="DECAY", help="Keep a moving average of the weights (decay per step, e.g. 0.999) and validate and save it in place of the raw weights, which train on.")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the training steps' network and the scene generator's per-pixel kernels (fused kernels; the first steps compile, ~50 s on a 2-core CPU, and need a C++ compiler there); a resumed run may turn it on or off.")] = None,
    num_workers: Annotated[Optional[int], typer.Option("--workers", min=0, metavar="N", help="Data loader processes (folder), or > 0: generate the next batch in a thread (GPUs).")] = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    strict: StrictOpt = False,
    json_out: JsonOpt = None,
    layout: Annotated[Optional[Layout], typer.Option("--layout", help="Dataset layout of DATA_DIR (default auto: detected; saved with the run).")] = None,
    sintel_pass: Annotated[Optional[SintelPass], typer.Option("--pass", help="Sintel: which rendering pass trains (default clean).")] = None,
) -> None:
    """Train FlowNetS on a dataset folder (Flying Chairs, Sintel, KITTI, ...), or on generated look-alike data by default."""
    with cli_errors():
        import os
        import time

        from ..device import resolve_device
        from ..training.config import preset_overrides, resolve_config
        from ..training.loop import train as run_training

        if data_dir is not None and synth_motion is not None:
            fail(f"--motion {synth_motion.value}: for generated data; {data_dir} has its own motions")
        if data_dir is not None and steps_per_epoch is not None:
            fail(f"--steps-per-epoch {steps_per_epoch}: for generated data; an epoch of {data_dir} is one pass "
                 "over its training pairs")
        if resume is not None and output is not None and Path(output).resolve() != Path(resume).resolve():
            fail(f"--output {output}: --resume {resume} names the run folder; leave --output out")
        check_json_path(json_out, overwrite or resume is not None, (init, data_dir))  # a resumed run's JSON is its own, updated
        options = dict(
            epochs=epochs, batch_size=batch_size, lr=lr, width=width, seed=seed, minutes=minutes,
            arch=arch.value if arch else None, batch_norm=batch_norm, loss=loss.value if loss else None,
            upsampler=upsampler.value if upsampler else None,
            crop=parse_size(crop, "--crop") if crop else None, split=split, steps_per_epoch=steps_per_epoch,
            synth_motion=synth_motion.value if synth_motion else None,
            augment=augment, num_workers=num_workers, freeze_bn=True if freeze_bn else None,
            freeze_backbone=True if freeze_backbone else None, ema=ema, compile=compile,
            layout=layout.value if layout else None, sintel_pass=sintel_pass.value if sintel_pass else None)
        name = preset.value if preset else None
        config = resolve_config(name, data_dir=data_dir, init=init, resume=resume, **options)
        overrides = None if resume else preset_overrides(name, data_dir, **options)
        run_dir = resume or output or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
        torch_device = resolve_device(device)
        reuse_freed_memory(torch_device)
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

            primary = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 alone reports
            try:
                result = run_training(config, output=run_dir, data_dir=data_dir,
                                      resume=resume is not None, overwrite=overwrite, device=torch_device,
                                      on_event=on_event if primary else None, strict=strict, overrides=overrides)
            except KeyboardInterrupt:
                if (Path(run_dir) / "state.safetensors").is_file():
                    err_console.print(f"[yellow]interrupted[/]; continue with: flowcli train --resume {escape(str(run_dir))}")
                else:
                    err_console.print("[yellow]interrupted[/] before the first checkpoint; nothing was kept")
                raise typer.Exit(130)
        if not primary:
            return
        write_json(json_out, result)
        if result.trained_epochs == 0:
            say(finished_line(result))
        else:
            out_console.print(table("training", [
                ("run folder", result.run_dir), ("epochs", f"{result.epoch} of {result.epochs}"),
                ("best val EPE", f"{result.best_val_epe:.3f}"), ("weights", result.weights)]))


def finished_line(result) -> str:
    """Resuming a finished run trains nothing (exit 0): say so, and how to extend it."""
    if result.stopped_by == "minutes":
        return (f"{result.run_dir}: finished at epoch {result.epoch}, its {result.minutes:g}-minute budget spent; "
                f"to train on, resume with --minutes M (M > {result.minutes:g})")
    return (f"{result.run_dir}: finished at epoch {result.epoch} of {result.epochs}; "
            f"to train on, resume with --epochs N (N > {result.epoch})")
