"""What every benchmark prints above its numbers: the exact command that reproduces them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line(script_file: str, argv: list[str] | None) -> str:
    """'python benchmarks/x.py ARGS', with the script relative to the working folder when it can be."""
    script = Path(script_file).resolve()
    try:
        script = script.relative_to(Path.cwd())
    except ValueError:
        pass
    given = sys.argv[1:] if argv is None else argv
    return "python " + " ".join(shlex.quote(str(a)) for a in [script, *given])
