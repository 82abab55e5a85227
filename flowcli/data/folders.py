"""Flying Chairs folders: find the `<id>_img1.<ext>`, `<id>_img2.<ext>`, `<id>_flow.flo` triplets.

ext is any of flowcli.io.IMAGE_SUFFIXES. Every public function raises `DataError` naming the folder or file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..io import IMAGE_SUFFIXES
_NAME = re.compile(r"^(?P<id>.+)_(?P<kind>img1|img2|flow)(?P<ext>\.[^.]+)$")
_LISTED = 5  # how many offending ids an error message names before "and N more"


@dataclass(frozen=True)
class Sample:
    id: str
    img1: Path
    img2: Path
    flow: Path


def listing(items: Sequence[str], limit: int = _LISTED) -> str:
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"


def _complete(folder: Path, pair_id: str, parts: dict[str, set[str]]) -> Sample | str:
    """The sample for `pair_id`, or a description of what it lacks."""
    img1, img2, flow = (parts.get(kind, set()) for kind in ("img1", "img2", "flow"))
    ext = next((e for e in IMAGE_SUFFIXES if e in img1 and e in img2), None)
    if ext is not None and flow:
        return Sample(pair_id, folder / f"{pair_id}_img1{ext}", folder / f"{pair_id}_img2{ext}",
                      folder / f"{pair_id}_flow.flo")
    ext = next((e for e in IMAGE_SUFFIXES if e in img1 | img2), IMAGE_SUFFIXES[0])
    wanted = {"img1": (ext, img1), "img2": (ext, img2), "flow": (".flo", flow)}
    missing = [f"{pair_id}_{kind}{e}" for kind, (e, have) in wanted.items() if e not in have]
    return f"{pair_id}: missing {', '.join(missing)}"


def find_samples(folder: str | Path, *, strict: bool = False) -> tuple[list[Sample], list[str]]:
    """Complete triplets of `folder` sorted by id, and a description of each incomplete one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found: dict[str, dict[str, set[str]]] = {}
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        ext, kind = match["ext"], match["kind"]
        if ext not in ((".flo",) if kind == "flow" else IMAGE_SUFFIXES):
            continue
        found.setdefault(match["id"], {}).setdefault(kind, set()).add(ext)
    if not found:
        raise DataError(
            f"{folder}: no Flying Chairs pairs found"
            " (expected <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo)"
        )
    samples, incomplete = [], []
    for pair_id in sorted(found):
        result = _complete(folder, pair_id, found[pair_id])
        (samples if isinstance(result, Sample) else incomplete).append(result)
    if not samples:
        raise DataError(f"{folder}: no complete Flying Chairs triplet ({listing(incomplete)})")
    if strict and incomplete:
        raise DataError(f"{folder}: {len(incomplete)} incomplete triplets ({listing(incomplete)})")
    return samples, incomplete

