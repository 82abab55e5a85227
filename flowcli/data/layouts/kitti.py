"""KITTI 2012 / 2015 optical flow: frames `image_2/<id>_10.png`, `<id>_11.png` (2012: `colored_0/`),
ground truth `flow_occ/<id>_10.png` (every pixel with a measured motion) or, where absent,
`flow_noc/<id>_10.png` (non-occluded pixels only), in KITTI's 16-bit PNG encoding. The folder given
may be the dataset's root (holding `training/`) or the `training` / `testing` folder itself. Ids are
`<id>_10`, as the devkit names results."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from .common import Found, Sample, missing_file, training_part

IMAGE_DIRS = ("image_2", "colored_0")  # 2015, 2012
FLOW_DIRS = ("flow_occ", "flow_noc")
_FIRST = re.compile(r"^(\d+)_10\.png$")


def _first_dir(base: Path, names: tuple[str, ...]) -> Path | None:
    return next((base / name for name in names if (base / name).is_dir()), None)


def signature(path: Path) -> str | None:
    images = _first_dir(training_part(path), IMAGE_DIRS)
    return None if images is None else str(images.relative_to(path)) + "/"


def find(path: Path, *, need_flow: bool) -> Found:
    base = training_part(path)
    images = _first_dir(base, IMAGE_DIRS)
    if images is None:
        raise DataError(f"{path}: no KITTI image_2/ or colored_0/ folder")
    flows = _first_dir(base, FLOW_DIRS)
    if need_flow and flows is None:
        raise DataError(f"{path}: no KITTI flow_occ/ or flow_noc/ folder of ground truth "
                        "(KITTI's testing half has none)")
    samples, missing = [], []
    for first in sorted(f for f in images.iterdir() if _FIRST.match(f.name)):
        number = _FIRST.match(first.name)[1]
        second = images / f"{number}_11.png"
        flow = flows / f"{number}_10.png" if flows is not None else None
        lacking = [p for p in (second, flow if need_flow else None) if p is not None and not p.is_file()]
        if lacking:
            missing += lacking
            continue
        samples.append(Sample(f"{number}_10", first, second, flow if flow is not None and flow.is_file() else None,
                              flow_format="kitti"))
    if missing:
        raise missing_file(path, missing, len(samples), "KITTI file")
    if not samples:
        raise DataError(f"{path}: no KITTI pairs in {images.relative_to(path)}/ (expected <id>_10.png, <id>_11.png)")
    return Found("kitti", path, samples, [])
