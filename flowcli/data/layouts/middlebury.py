"""Middlebury flow: `other-data/<seq>/frame10.png`, `frame11.png`, ground truth
`other-gt-flow/<seq>/flow10.flo`. Middlebury gives ground truth for 8 of its 12 "other" sequences, so
a sequence without an `other-gt-flow/<seq>` folder is skipped (with a warning) where ground truth is
needed; one whose folder lacks flow10.flo, or whose frames are missing, stops with one line."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .common import Found, Sample, missing_file

DATA, GT = "other-data", "other-gt-flow"


def signature(path: Path) -> str | None:
    return f"{DATA}/" if (path / DATA).is_dir() else None


def find(path: Path, *, need_flow: bool) -> Found:
    data, gt = path / DATA, path / GT
    if not data.is_dir():
        raise DataError(f"{path}: no Middlebury {DATA}/ folder")
    samples, missing, skipped = [], [], []
    for seq in sorted(d for d in data.iterdir() if d.is_dir()):
        first, second, flow = seq / "frame10.png", seq / "frame11.png", gt / seq.name / "flow10.flo"
        has_truth = flow.parent.is_dir()
        if need_flow and not has_truth:
            skipped.append(f"{seq.name}: no ground truth ({GT}/{seq.name})")
            continue
        lacking = [p for p in (first, second, flow if has_truth else None) if p is not None and not p.is_file()]
        if lacking:
            missing += lacking
            continue
        samples.append(Sample(seq.name, first, second, flow if has_truth else None))
    if missing:
        raise missing_file(path, missing, len(samples), "Middlebury file")
    if not samples:
        why = f" with ground truth in {GT}/" if need_flow else ""
        raise DataError(f"{path}: no Middlebury sequence{why} ({DATA}/<seq>/frame10.png, frame11.png)")
    return Found("middlebury", path, samples, skipped)
