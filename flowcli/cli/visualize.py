"""`flowcli visualize`: colour-code a flow field, or draw a comparison panel for a pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    app, DeviceOpt, WeightsOpt, Tta, DEFAULTS, TtaOpt, PassesOpt, SmoothOpt, RefineOpt, inference_options, cli_errors, say,
)

MODEL_OPTIONS = ("weights", "device", "tta", "passes", "smooth", "refine")  # used only to predict a panel's flow


@app.command()
def visualize(
    ctx: typer.Context,
    flow: Annotated[Optional[Path], typer.Argument(help="A .flo file to colour-code; with --pair, drawn as the prediction "
                                                   "(then the model options are refused).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .png (replaced if it exists).")] = ...,
    pair: Annotated[Optional[tuple[Path, Path]], typer.Option(help="Two images: draw a panel with them, predicting the flow unless FLOW is given.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth .flo for the panel (adds GT, error map and EPE).")] = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    max_flow: Annotated[Optional[float], typer.Option(help="Flow magnitude in px shown fully saturated (default: the field's max; with --gt, the GT's).")] = None,
) -> None:
    """Colour-code a flow field, or draw image 1 | image 2 | ground truth | prediction | error."""
    with cli_errors():
        from ..errors import FlowcliError
        from ..inference.visualize import draw_flow, draw_panel

        given = _given(ctx, MODEL_OPTIONS)
        if pair is None:
            if flow is None:
                raise FlowcliError("give a .flo file, or --pair IMG1 IMG2 for a panel")
            if gt is not None or given:
                flags = _given(ctx, ("gt",)) + given
                raise FlowcliError(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} for a panel: "
                                   "add --pair IMG1 IMG2")
            result = draw_flow(flow, max_flow=max_flow, output=output)
        elif flow is not None:
            if given:
                raise FlowcliError(f"{flow} is drawn as the prediction, so {', '.join(given)} would do nothing "
                                   f"(omit {flow.name} to predict with them)")
            result = draw_panel(*pair, flow=flow, gt=gt, max_flow=max_flow, output=output)
        else:
            result = draw_panel(*pair, gt=gt, max_flow=max_flow, output=output, weights=weights, device=device,
                                options=inference_options(tta, passes, smooth, refine))
        say(f"wrote {output}" + ("" if result.epe is None else f" (EPE {result.epe:.3f} px)"))


def _given(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The long flags of `names` that were typed on the command line (not left at their defaults)."""
    flags = {p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0]) for p in ctx.command.params}
    return [flags[n] for n in names if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"]
