"""`flowcli predict`: estimate optical flow for a pair, a folder of pairs or a folder of video frames."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    app, DeviceOpt, WeightsOpt, Dtype, DtypeOpt, Tta, DEFAULTS, TtaOpt, PassesOpt, SmoothOpt, RefineOpt, inference_options, cli_errors, say, progress_bar,
)


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
                                        options=inference_options(tta, passes, smooth, refine), fmt=fmt, sequence=sequence,
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
                             options=inference_options(tta, passes, smooth, refine), max_side=max_side)
        write_flow(output, flow)
        magnitude = (flow**2).sum(-1) ** 0.5
        say(f"wrote {output} ({flow.shape[1]}x{flow.shape[0]}, mean |flow| "
                          f"{magnitude.mean():.2f} px, max {magnitude.max():.2f} px)")
