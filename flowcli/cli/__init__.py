"""The command line: one module per command, each parsing its options, calling the Python API and
turning its errors into one line. Nothing in flowcli imports this package."""

# Importing a command module registers it; `flowcli --help` lists them in this order.
from . import predict, visualize, train, evaluate, synth, bench, info, export  # noqa: F401, I001
from .app import app

__all__ = ["app"]
