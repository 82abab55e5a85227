"""A list of pairs: a text file (`pairs.txt` in a folder, or the file itself), one pair a line,
`img1 img2 [flow]`, paths relative to the file (or absolute); blank lines and `#` comments are
skipped. A flow ending in .png is KITTI's 16-bit encoding, any other a .flo. A pair's id is its
first image's path without the suffix, folders joined by "_" and any "..", "." or leading "/"
dropped, so that outputs named after it stay inside the output folder (then `@<line>` when two
lines give the same id)."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .common import Found, Sample, missing_file

LIST_NAME = "pairs.txt"


def list_file(path: Path) -> Path:
    return path / LIST_NAME if path.is_dir() else path


def _id_of(image: str) -> str:
    """'../frames/a.png' -> 'frames_a', '/data/x/1.ppm' -> 'data_x_1': a name, never a path."""
    parts = [part for part in Path(image).with_suffix("").parts if part not in ("..", ".", "/", "\\", "")]
    return "_".join(part.replace(":", "") for part in parts) or "pair"


def signature(path: Path) -> str | None:
    return LIST_NAME if (path / LIST_NAME).is_file() else None


def find(path: Path, *, need_flow: bool) -> Found:
    listed = list_file(path)
    if not listed.is_file():
        raise DataError(f"{path}: no {LIST_NAME} list of pairs")
    try:
        lines = listed.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{listed}: not a readable list of pairs ({type(exc).__name__})") from None
    samples, missing, seen = [], [], set()
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise DataError(f"{listed}: line {number}: expected 'img1 img2 [flow]', got {len(fields)} fields")
        if need_flow and len(fields) == 2:
            raise DataError(f"{listed}: line {number} names no ground-truth flow (expected 'img1 img2 flow')")
        paths = [listed.parent / field for field in fields]
        lacking = [p for p in paths if not p.is_file()]
        if lacking:
            missing += lacking
            continue
        pair_id = _id_of(fields[0])
        pair_id = f"{pair_id}@{number}" if pair_id in seen else pair_id
        seen.add(pair_id)
        flow = paths[2] if len(paths) == 3 else None
        fmt = "kitti" if flow is not None and flow.suffix.lower() == ".png" else "flo"
        samples.append(Sample(pair_id, paths[0], paths[1], flow, flow_format=fmt))
    if missing:
        raise missing_file(listed, missing, len(samples), "listed file")
    if not samples:
        raise DataError(f"{listed}: lists no pairs (expected 'img1 img2 [flow]' lines)")
    return Found("list", listed, samples, [])
