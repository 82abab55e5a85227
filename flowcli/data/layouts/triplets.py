"""The one-folder triplet layouts: Flying Chairs (`<id>_img1.ppm`, `<id>_img2.ppm`, `<id>_flow.flo`),
the FlowNet 2.0 code's examples (`<id>-img0.ppm`, `<id>-img1.ppm`, `<id>-gt.flo`) and FlyingChairs2
(`<id>-img_0.png`, `<id>-img_1.png`, `<id>-flow_01.flo`). Incomplete triplets are skipped with a
warning, as Flying Chairs folders always were (strict refuses them)."""

from __future__ import annotations

from pathlib import Path

from ..folders import CHAIRS, Naming, find_samples
from .common import Found

FLOWNET = Naming("FlowNet-style", "-", ("img0", "img1", "gt"), "<id>-img0.ppm, <id>-img1.ppm, <id>-gt.flo")
CHAIRS2 = Naming("FlyingChairs2", "-", ("img_0", "img_1", "flow_01"), "<id>-img_0.png, <id>-img_1.png, <id>-flow_01.flo")
NAMINGS = {"chairs": CHAIRS, "flownet": FLOWNET, "chairs2": CHAIRS2}


def signature(naming: Naming, path: Path) -> str | None:
    """The name of a file of `path` named as `naming` says (None when there is none)."""
    if not path.is_dir():
        return None
    pattern = naming.pattern
    return next((entry.name for entry in sorted(path.iterdir())
                 if pattern.match(entry.name) and not entry.name.startswith(".")), None)


def find(layout: str, path: Path, *, need_flow: bool, strict: bool) -> Found:
    samples, incomplete = find_samples(path, strict=strict, naming=NAMINGS[layout], need_flow=need_flow)
    return Found(layout, path, samples, incomplete)
