"""`flowcli visualize`: colour-code a flow field, or draw a comparison panel for a pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    app, DeviceOpt, WeightsOpt, Tta, DEFAULTS, TtaOpt, PassesOpt, SmoothOpt, RefineOpt, inference_options, cli_errors, say,
)


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
                                 options=inference_options(tta, passes, smooth, refine))
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
