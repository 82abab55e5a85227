"""What every dataset layout shares: the Sample it finds (data/folders.py's), what a search found,
the one-line error for a partly matching tree, and reading a sample's ground truth in its format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...io import read_flow, read_kitti_flow
from ..folders import Sample, listing

FLOW_FORMATS = ("flo", "kitti")


@dataclass(frozen=True)
class Found:
    """The pairs of one dataset tree: its layout, the folder (or list file) searched, the samples in
    a stable order, and the pairs skipped with a reason (warned about; strict refuses them)."""

    layout: str
    root: Path
    samples: list[Sample]
    incomplete: list[str]


def training_part(path: Path) -> Path:
    """A benchmark's `training/` folder when `path` is the benchmark's root (Sintel, KITTI), else path."""
    return path / "training" if (path / "training").is_dir() else path


def missing_file(root: Path, missing: list[Path], found: int, what: str) -> DataError:
    """The one line for a tree that matches a layout only partly: the first missing file (relative
    to the tree) and how many complete pairs were found."""
    first = missing[0]
    try:
        first = first.relative_to(root if root.is_dir() else root.parent)
    except ValueError:
        pass
    more = f" and {len(missing) - 1} more files" if len(missing) > 1 else ""
    return DataError(f"{root}: {what} {first} is missing{more} ({found} complete pairs found)")


def read_sample_flow(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(flow, valid) of a sample's ground truth in its format; unknown pixels masked, never averaged."""
    if sample.flow is None:
        raise DataError(f"{sample.img1}: this pair has no ground-truth flow")
    if sample.flow_format == "kitti":
        return read_kitti_flow(sample.flow)
    return read_flow(sample.flow)


__all__ = ["FLOW_FORMATS", "Found", "Sample", "listing", "missing_file", "read_sample_flow"]
