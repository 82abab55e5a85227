"""`flowcli train`: train FlowNetS on a folder or on generated data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..training.config import PRESETS
from .common import (
    app, out_console, err_console, DeviceOpt, StrictOpt, JsonOpt, Preset, SplitScheme, cli_errors, parse_size, say, write_json, progress_bar, table,
)


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
