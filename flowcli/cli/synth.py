"""`flowcli synth`: generate Flying-Chairs-style pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    app, out_console, DeviceOpt, cli_errors, parse_size, say, progress_bar, table,
)


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
