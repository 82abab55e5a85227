"""MPI Sintel: `training/{clean,final}/<scene>/frame_####.png`, ground truth
`training/flow/<scene>/frame_####.flo` (the flow from frame i to frame i + 1). The folder given may be
the dataset's root (holding `training/`) or the `training` (or `test`) folder itself. Every scene's
consecutive frames are pairs; their id is `<scene>/frame_####`, their scene the scene's name."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import DataError
from .common import Found, Sample, missing_file, training_part

PASSES = ("clean", "final")
_FRAME = re.compile(r"^frame_(\d+)\.png$")


def signature(path: Path) -> str | None:
    base = training_part(path)
    # the frames' folders, not flow/: a Flying Chairs folder may hold a `flow/` of predictions
    marker = next((base / name for name in PASSES if (base / name).is_dir()), None)
    return None if marker is None else str(marker.relative_to(path)) + "/"


def find(path: Path, *, sintel_pass: str, need_flow: bool) -> Found:
    if sintel_pass not in PASSES:
        raise DataError(f"sintel_pass={sintel_pass!r}: choose {' or '.join(PASSES)}")
    base = training_part(path)
    frames_dir = base / sintel_pass
    if not frames_dir.is_dir():
        raise DataError(f"{path}: no {frames_dir.relative_to(path)}/ folder of Sintel's {sintel_pass} pass")
    samples, missing, gaps = [], [], []
    for scene in sorted(d for d in frames_dir.iterdir() if d.is_dir()):
        frames = sorted((f for f in scene.iterdir() if _FRAME.match(f.name)), key=lambda f: int(_FRAME.match(f.name)[1]))
        for first, second in zip(frames, frames[1:]):
            following = int(_FRAME.match(first.name)[1]) + 1
            if int(_FRAME.match(second.name)[1]) != following:  # a gap: frame i's flow is not to this frame
                gaps.append(scene / f"frame_{following:04d}.png")
                continue
            flow = base / "flow" / scene.name / f"{first.stem}.flo"
            if not flow.is_file():
                if need_flow:
                    missing.append(flow)
                flow = None
            if flow is not None or not need_flow:
                samples.append(Sample(f"{scene.name}/{first.stem}", first, second, flow, scene=scene.name))
    if gaps:
        raise missing_file(path, gaps, len(samples), "Sintel frame")
    if missing:
        raise missing_file(path, missing, len(samples), "Sintel ground truth")
    if not samples:
        raise DataError(f"{path}: no Sintel frame pairs in {frames_dir.relative_to(path)}/<scene>/frame_####.png")
    return Found("sintel", path, samples, [])
