"""`flowcli export`: the network body as an ONNX file, checked against PyTorch, for runtimes without it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import OverwriteOpt, WeightsOpt, app, cli_errors, err_console, out_console, progress_bar, say, table


class ExportFormat(str, Enum):
    onnx = "onnx"


class ExportDtype(str, Enum):  # no bf16: onnxruntime's CPU provider has no bf16 convolution
    fp32 = "fp32"
    fp16 = "fp16"


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", "--out", help="The model file to write (refused if it exists, unless --overwrite).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="onnx: the BN-folded network body, dynamic batch, height and width (multiples of 64).")] = ExportFormat.onnx,
    weights: WeightsOpt = None,
    width: Annotated[Optional[float], typer.Option(help="FlowNetS channel multiplier: of --weights random (default 0.25); "
                                                   "with a weights file, checked against the file's.")] = None,
    dtype: Annotated[ExportDtype, typer.Option("--dtype", help="Precision of the exported model.")] = ExportDtype.fp32,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export the network for runtimes without PyTorch and check it against PyTorch (max |difference| in px)."""
    with cli_errors():
        from ..inference.export import export_onnx

        with progress_bar() as bar:
            task = bar.add_task("export", total=None, info="")
            result = export_onnx(output, weights=weights, width=width, dtype=dtype.value, overwrite=overwrite,
                                 on_progress=lambda what: bar.update(task, description=what))
        rows = [(f"{case.source} {case.height}x{case.width}", f"{case.max_abs_px:.3g} px") for case in result.parity]
        out_console.print(table(f"parity: max |ONNX - PyTorch| (tolerance {result.tolerance_px:g} px)", rows))
        card = result.metadata
        say(f"wrote {result.output} ({result.bytes / 1e6:.1f} MB, {fmt.value} opset {result.opset}, {result.dtype}, "
            f"{card['arch']} width {card['width']}, flow scale {card['flow_scale']}; input (B, 6, H, W) with H and W "
            f"multiples of {card['stride']}) in {result.seconds:.1f} s")
        say("pre- and post-processing: see the model's metadata ('input', 'pad_to', 'output') and README", err_console)
