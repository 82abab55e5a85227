"""Dataset layouts people already have, found by their file patterns: `find_pairs(path)` detects the
layout (or takes `layout=`) and returns its samples (data/folders.Sample: id, img1, img2, flow, scene,
flow_format). One module per family; detection asks each for a signature, no registry:

    chairs      <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo            (Flying Chairs)
    flownet     <id>-img0.ppm, <id>-img1.ppm, <id>-gt.flo              (FlowNet 2.0's examples)
    chairs2     <id>-img_0.png, <id>-img_1.png, <id>-flow_01.flo       (FlyingChairs2)
    sintel      training/{clean,final}/<scene>/frame_####.png, training/flow/<scene>/frame_####.flo
    kitti       image_2/<id>_10.png, <id>_11.png (2012: colored_0/), flow_occ/ or flow_noc/<id>_10.png
    middlebury  other-data/<seq>/frame10.png, frame11.png, other-gt-flow/<seq>/flow10.flo
    list        pairs.txt: `img1 img2 [flow]` a line, paths relative to the file (or the file itself)
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from . import kitti, listfile, middlebury, sintel, triplets
from .common import Found, Sample, read_sample_flow

AUTO = "auto"
LAYOUTS = ("chairs", "flownet", "chairs2", "sintel", "kitti", "middlebury", "list")
# the triplet layouts' names and file patterns are their Namings' (data/folders.py, triplets.py)
TITLES = {**{name: naming.name for name, naming in triplets.NAMINGS.items()}, "sintel": "MPI Sintel",
          "kitti": "KITTI", "middlebury": "Middlebury", "list": "pairs list"}
PATTERNS = {  # what each layout's files look like (messages)
    **{name: naming.example for name, naming in triplets.NAMINGS.items()},
    "sintel": "training/{clean,final}/<scene>/frame_####.png with training/flow/<scene>/frame_####.flo",
    "kitti": "image_2/<id>_10.png, <id>_11.png (or colored_0/) with flow_occ/ or flow_noc/<id>_10.png",
    "middlebury": "other-data/<seq>/frame10.png, frame11.png with other-gt-flow/<seq>/flow10.flo",
    "list": "pairs.txt with 'img1 img2 [flow]' lines",
}


def signatures(path: Path) -> dict[str, str]:
    """{layout: a file or folder of `path` that looks like it}, for every layout it looks like."""
    if path.is_file():
        return {"list": path.name}
    found = {name: triplets.signature(naming, path) for name, naming in triplets.NAMINGS.items()}
    found.update(sintel=sintel.signature(path), kitti=kitti.signature(path),
                 middlebury=middlebury.signature(path), list=listfile.signature(path))
    return {name: where for name, where in found.items() if where is not None}


def detect_layout(path: str | Path) -> str | None:
    """The one layout `path` looks like; None when none; DataError naming both when it looks like two."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder or list file")
    found = signatures(path)
    if len(found) > 1:
        (a, where_a), (b, where_b) = list(found.items())[:2]
        raise DataError(f"{path}: mixes two dataset layouts, {TITLES[a]} ({where_a}) and {TITLES[b]} ({where_b}); "
                        f"pass layout={a} or layout={b}")
    return next(iter(found), None)


def find_pairs(path: str | Path, *, layout: str = AUTO, sintel_pass: str = "clean", need_flow: bool = True,
               strict: bool = False) -> Found:
    """The pairs of a dataset tree (or list file) in `layout` (auto: detected). need_flow=True keeps
    only pairs with ground truth and stops at a partly matching tree with one line naming the first
    missing file; need_flow=False (prediction) takes image pairs, with their flow where present."""
    path = Path(path)
    if layout != AUTO and layout not in LAYOUTS:
        raise DataError(f"layout={layout!r}: choose {', '.join((AUTO, *LAYOUTS))}")
    if layout == AUTO:
        layout = detect_layout(path)
        if layout is None:
            if not path.is_dir():
                raise DataError(f"{path}: not a folder")
            try:  # the Flying Chairs message, as before, then the other layouts
                triplets.find("chairs", path, need_flow=need_flow, strict=strict)
            except DataError as exc:
                raise DataError(f"{exc}, nor another known layout (pass layout=NAME to force one of "
                                f"{', '.join(LAYOUTS[1:])})") from None
    elif not path.exists():
        raise DataError(f"{path}: no such folder or list file")
    elif layout not in signatures(path):
        raise DataError(f"{path}: layout={layout} was asked for, but its files do not follow the "
                        f"{TITLES[layout]} layout (expected {PATTERNS[layout]})")
    if layout in triplets.NAMINGS:
        return triplets.find(layout, path, need_flow=need_flow, strict=strict)
    found = {"sintel": lambda: sintel.find(path, sintel_pass=sintel_pass, need_flow=need_flow),
             "kitti": lambda: kitti.find(path, need_flow=need_flow),
             "middlebury": lambda: middlebury.find(path, need_flow=need_flow),
             "list": lambda: listfile.find(path, need_flow=need_flow)}[layout]()
    if strict and found.incomplete:
        raise DataError(f"{path}: {len(found.incomplete)} pairs skipped ({'; '.join(found.incomplete[:5])})")
    return found


__all__ = ["AUTO", "LAYOUTS", "PATTERNS", "TITLES", "Found", "Sample", "detect_layout", "find_pairs",
           "read_sample_flow", "signatures"]
