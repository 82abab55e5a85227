"""The `flowcli` app: its callback (--version) and the order of its commands."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import app


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"flowcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Optical flow with FlowNetS: train, evaluate, predict, visualize and benchmark."""
