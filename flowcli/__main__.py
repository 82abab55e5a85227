"""`python -m flowcli` (also what `torchrun -m flowcli train ...` runs)."""

from .cli import app

app(prog_name="flowcli")
