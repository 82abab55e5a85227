"""`flowcli visualize`: colour-code flow fields on one scale, or draw a comparison panel for a pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (Backend, BackendOpt, DEFAULTS, DeviceOpt, Dtype, DtypeOpt, OverwriteOpt, PassesOpt,
                     RefineOpt, SmoothOpt, Tta, TtaOpt, WeightsOpt, app, cli_errors, given_flags,
                     inference_options, reuse_freed_memory, say)

MODEL_OPTIONS = ("weights", "device", "dtype", "backend", "tta", "passes", "smooth", "refine")  # used only to predict a panel's flow


@app.command()
def visualize(
    ctx: typer.Context,
    flows: Annotated[Optional[list[Path]], typer.Argument(
        metavar="FLOW", show_default=False,
        help="A .flo file to colour-code (several: one colour scale for all, each written as -o DIR/<name>.png); "
             "with --pair, one FLOW is drawn as the prediction (then the model options are refused).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", "--out", help="Output .png (an existing file only with --overwrite); with several "
                                         "FLOWs, a folder for <name>.png (made if missing).")] = ...,
    pair: Annotated[Optional[tuple[Path, Path]], typer.Option(metavar="IMG1 IMG2", help="Two images: draw a panel with them, predicting the flow unless FLOW is given.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth .flo for the panel (adds GT, error map and EPE).")] = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.fp32,
    backend: BackendOpt = Backend(DEFAULTS.backend),
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    max_flow: Annotated[Optional[float], typer.Option(metavar="PX", help="Flow magnitude in px shown fully saturated (default: the largest over all FLOWs; with --gt, the GT's).")] = None,
    legend: Annotated[bool, typer.Option("--legend/--no-legend", help="Draw the colour-wheel legend with the px of full saturation.")] = True,
    arrows: Annotated[bool, typer.Option("--arrows", help="Draw a sparse arrow field (over image 1 in a panel, else over the colours).")] = False,
    arrow_step: Annotated[Optional[int], typer.Option(metavar="PX", help="Pixels between arrows (default: about 20 along the longer side).")] = None,
    arrow_scale: Annotated[Optional[float], typer.Option(metavar="X", help="Arrow length per px of flow (default: most arrows about one step long).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Colour-code flow fields on one scale, or draw image 1 | image 2 | ground truth | prediction | error."""
    with cli_errors():
        from ..errors import FlowcliError
        from ..inference.visualize import draw_flow, draw_flows, draw_panel

        flows = flows or []
        flags = given_flags(ctx, ("arrow_step", "arrow_scale"))
        if flags and not arrows:
            raise FlowcliError(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} for the arrows: add --arrows")
        drawing = dict(max_flow=max_flow, legend=legend, arrows=arrows, arrow_step=arrow_step, arrow_scale=arrow_scale)
        given = given_flags(ctx, MODEL_OPTIONS)
        if pair is None:
            if not flows:
                raise FlowcliError("give a .flo file, or --pair IMG1 IMG2 for a panel")
            if gt is not None or given:
                flags = given_flags(ctx, ("gt",)) + given
                raise FlowcliError(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} for a panel: "
                                   "add --pair IMG1 IMG2")
            if len(flows) > 1:
                results = draw_flows(flows, output_dir=output, overwrite=overwrite, **drawing)
                names = ", ".join(Path(r.output).name for r in results[:3]) + (", ..." if len(results) > 3 else "")
                say(f"wrote {len(results)} pictures to {output} ({names}), one colour scale: "
                    f"full saturation at {results[0].max_flow:.2f} px")
                return
            result = draw_flow(flows[0], output=output, overwrite=overwrite, **drawing)
        elif len(flows) > 1:
            raise FlowcliError(f"--pair draws one FLOW as the prediction, got {len(flows)}")
        elif flows:
            if given:
                raise FlowcliError(f"{flows[0]} is drawn as the prediction, so {', '.join(given)} would do nothing "
                                   f"(omit {flows[0].name} to predict with them)")
            result = draw_panel(*pair, flow=flows[0], gt=gt, output=output, overwrite=overwrite, **drawing)
        else:
            reuse_freed_memory(device)
            result = draw_panel(*pair, gt=gt, output=output, overwrite=overwrite, weights=weights, device=device,
                                dtype=dtype.value, options=inference_options(tta, passes, smooth, refine, backend),
                                **drawing)
        say(f"wrote {output}" + ("" if result.epe is None else f" (EPE {result.epe:.3f} px)"))

