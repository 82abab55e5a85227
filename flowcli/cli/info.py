"""`flowcli info`: what a weights file holds, and which steps run around the network."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .common import (
    DEFAULTS, PassesOpt, RefineOpt, SmoothOpt, Tta, TtaOpt, app, cli_errors, inference_options,
    out_console, say, table,
)


@app.command()
def info(
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", metavar="FILE|NAME",
        help="Weights .safetensors, or a shipped network: 'fast' (the default) or 'accurate'.")] = None,
    pipeline: Annotated[bool, typer.Option("--pipeline", help="List the steps from the pair to the flow, in order, for the options given.")] = False,
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
) -> None:
    """Show a weights file's architecture, parameter count and training metadata (or, with --pipeline, what runs)."""
    with cli_errors():
        from ..errors import FlowcliError

        if pipeline:
            from ..inference.pipeline import describe_pipeline

            for number, line in enumerate(describe_pipeline(inference_options(tta, passes, smooth, refine)), 1):
                say(f"{number}. {line}")
            return
        from ..checkpoint import load_model, metadata_json, weights_path
        from ..model import count_parameters

        if weights == "random":
            raise FlowcliError("info describes a weights file; 'random' has none")
        path = weights_path(weights or None)
        model = load_model(path)
        rows = [("file", str(path)), ("size", f"{path.stat().st_size / 2**20:.2f} MiB"),
                ("parameters", f"{count_parameters(model):,}")]
        rows += [(key, value if isinstance(value, str) else json.dumps(value))
                 for key, value in metadata_json(path).items()]
        out_console.print(table("weights", rows))
