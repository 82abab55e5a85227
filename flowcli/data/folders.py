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
_LISTED = 5  # how many offending ids an error message names before "and N more"


@dataclass(frozen=True)
class Sample:
    id: str
    img1: Path
    img2: Path
    flow: Path | None  # None: no ground truth (data/layouts finds such pairs for predict)
    scene: str | None = None  # Sintel's scene, Middlebury's sequence: results are also given per scene
    flow_format: str = "flo"  # "flo" (Middlebury .flo) or "kitti" (KITTI's 16-bit PNG)


@dataclass(frozen=True)
class Naming:
    """How one triplet layout names its files: <id><sep><kind><ext> for kinds (img1, img2, flow)."""

    name: str  # shown in messages: "Flying Chairs"
    sep: str
    kinds: tuple[str, str, str]
    example: str  # the expected names, for "no pairs found"

    @property
    def pattern(self) -> re.Pattern:
        kinds = "|".join(re.escape(k) for k in self.kinds)
        return re.compile(rf"^(?P<id>.+){re.escape(self.sep)}(?P<kind>{kinds})(?P<ext>\.[^.]+)$")


CHAIRS = Naming("Flying Chairs", "_", ("img1", "img2", "flow"), "<id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo")


def listing(items: Sequence[str], limit: int = _LISTED) -> str:
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"


def _complete(folder: Path, pair_id: str, parts: dict[str, dict[str, str]], naming: Naming = CHAIRS,
              need_flow: bool = True) -> Sample | str:
    """The sample for `pair_id`, or a description of what it lacks. `parts`: kind -> {suffix in
    lower case: as the file spells it}."""
    img1, img2, flow = (parts.get(kind, {}) for kind in naming.kinds)
    name = lambda kind, ext: folder / f"{pair_id}{naming.sep}{kind}{ext}"  # noqa: E731
    ext = next((e for e in IMAGE_SUFFIXES if e in img1 and e in img2), None)
    if ext is not None and (flow or not need_flow):
        return Sample(pair_id, name(naming.kinds[0], img1[ext]), name(naming.kinds[1], img2[ext]),
                      name(naming.kinds[2], flow[".flo"]) if flow else None)
    ext = next((e for e in IMAGE_SUFFIXES if e in img1.keys() | img2.keys()), IMAGE_SUFFIXES[0])
    wanted = dict(zip(naming.kinds, ((ext, img1), (ext, img2), (".flo", flow))))
    missing = [f"{pair_id}{naming.sep}{kind}{e}" for kind, (e, have) in wanted.items()
               if e not in have and (need_flow or kind != naming.kinds[2])]
    return f"{pair_id}: missing {', '.join(missing)}"


def find_samples(folder: str | Path, *, strict: bool = False, naming: Naming = CHAIRS,
                 need_flow: bool = True) -> tuple[list[Sample], list[str]]:
    """Complete triplets of `folder` sorted by id, and a description of each incomplete one
    (need_flow=False: image pairs, with their flow where present)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found: dict[str, dict[str, dict[str, str]]] = {}
    pattern = naming.pattern
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        # hidden files are no pairs: macOS leaves `._<name>` beside each file on foreign volumes
        if not match or entry.name.startswith(".") or not entry.is_file():
            continue
        ext, kind = match["ext"], match["kind"]
        if ext.lower() not in ((".flo",) if kind == naming.kinds[2] else IMAGE_SUFFIXES):
            continue
        found.setdefault(match["id"], {}).setdefault(kind, {})[ext.lower()] = ext
    if not found:
        raise DataError(f"{folder}: no {naming.name} pairs found (expected {naming.example})")
    samples, incomplete = [], []
    for pair_id in sorted(found):
        result = _complete(folder, pair_id, found[pair_id], naming, need_flow)
        (samples if isinstance(result, Sample) else incomplete).append(result)
    if not samples:
        raise DataError(f"{folder}: no complete {naming.name} triplet ({listing(incomplete)})")
    if strict and incomplete:
        raise DataError(f"{folder}: {len(incomplete)} incomplete triplets ({listing(incomplete)})")
    return samples, incomplete

