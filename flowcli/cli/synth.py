"""`flowcli synth`: write generated Flying-Chairs-style pairs (the embedded default data), or time the generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DeviceOpt, Motion, app, cli_errors, out_console, parse_size, plural, progress_bar,
                     reuse_freed_memory, say, table)


@app.command()
def synth(
    out_dir: Annotated[Optional[Path], typer.Argument(metavar="OUT_DIR", help="Folder to write <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo and <id>_occ.png (the true occlusion) into.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", "--out", help="The same folder, as an option.")] = None,
    count: Annotated[Optional[int], typer.Option(min=1, help="Number of pairs [default: 200].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed gives the same pairs [default: 0].")] = None,
    size: Annotated[str, typer.Option(metavar="HxW", help="Image size, height x width.")] = "384x512",
    textures: Annotated[Optional[Path], typer.Option(help="Folder of your own photos to use as textures too.")] = None,
    motion: Annotated[Motion, typer.Option(help="chairs (Flying Chairs' motions) or wide (large, turning in depth).")] = Motion.chairs,
    bench: Annotated[bool, typer.Option("--bench", help="Measure generation speed instead of writing files.")] = False,
    device: DeviceOpt = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the generator's per-pixel kernels: faster after ~15 s of compiling (needs a C++ compiler on a CPU); the same scenes up to float rounding.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the dataset a folder already holds.")] = False,
) -> None:
    """Generate Flying-Chairs-style pairs with exact ground-truth flow (the embedded default data)."""
    with cli_errors():
        from ..data.scenes import SynthConfig
        from ..data.synth import measure_speed, write_dataset
        from ..device import resolve_device
        from ..errors import FlowcliError

        if out_dir is not None and output is not None and out_dir != output:
            raise FlowcliError(f"two output folders given ({out_dir} and --output {output}): give one")
        out_dir = out_dir or output
        height, width = parse_size(size)
        try:
            scenes = SynthConfig(height=height, width=width).with_motion(motion.value)
        except ValueError as exc:
            raise FlowcliError(f"--size {size}: {exc}") from None
        torch_device = resolve_device(device)
        reuse_freed_memory(torch_device)
        if bench:
            ignored = [name for name, value in (("an output folder", out_dir), ("--count", count), ("--seed", seed),
                                                ("--textures", textures), ("--overwrite", overwrite or None))
                       if value is not None]
            if ignored:
                raise FlowcliError(f"{' and '.join(ignored)}: --bench times the generator and writes nothing; "
                                   "leave them out")
            result = measure_speed(device=torch_device, batch_size=16, height=height, width=width, seconds=5.0,
                                   config=scenes, compile=compile)
            out_console.print(table("generator speed", [
                ("device", result.device), ("batch x size", f"{result.batch_size} x {height}x{width}"),
                ("motion", motion.value),
                ("pairs/s", f"{result.pairs_per_s:.1f}"), ("timed", f"{result.pairs} pairs in {result.seconds:.1f} s"),
                ("bank building", f"{result.init_s:.2f} s"),
                ("warm-up", f"{result.warmup_s:.2f} s" + (" (compiling the kernels)" if compile else ""))]))
            return
        if out_dir is None:
            raise FlowcliError("give an output folder (or --bench)")
        count = 200 if count is None else count
        with progress_bar() as bar:
            task = bar.add_task("synth", total=count, info="")
            ids = write_dataset(out_dir, count=count, seed=seed or 0, config=scenes, textures_dir=textures,
                                overwrite=overwrite, device=torch_device, compile=compile,
                                on_progress=lambda done: bar.update(task, completed=done))
        say(f"wrote {plural(len(ids), 'pair')} ({height}x{width}) to {out_dir}")
