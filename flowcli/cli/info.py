"""`flowcli info`: describe a weights file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    app, out_console, WeightsOpt, cli_errors, table,
)


@app.command()
def info(weights: WeightsOpt = None) -> None:
    """Show a weights file's architecture, parameter count and training metadata."""
    with cli_errors():
        from ..checkpoint import DEFAULT_WEIGHTS, load_model, metadata_json
        from ..errors import FlowcliError

        if weights == "random":
            raise FlowcliError("info describes a weights file; 'random' has none")
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        model = load_model(path)
        meta = metadata_json(path)
        rows = [("file", str(path)), ("size", f"{path.stat().st_size / 2**20:.2f} MiB"),
                ("parameters", f"{sum(p.numel() for p in model.parameters()):,}")]
        rows += [(key, json.dumps(value) if not isinstance(value, str) else value) for key, value in meta.items()]
        out_console.print(table("weights", rows))
