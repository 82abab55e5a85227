"""Prediction API: two images (arrays or paths) -> an HxWx2 flow; or a whole folder of pairs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, FlowFormatError, ImageError
from ..io import IMAGE_SUFFIXES, read_image, write_flo, write_image
from ..viz import flow_to_color
from .batching import iterate_predictions
from .engine import load_predictor
from .options import InferenceOptions

ImageLike = np.ndarray | str | os.PathLike


def check_pair(img1: np.ndarray, img2: np.ndarray, names=("image 1", "image 2")) -> None:
    if img1.shape != img2.shape:
        raise ImageError(f"{names[0]} is {img1.shape[1]}x{img1.shape[0]} but {names[1]} is "
                         f"{img2.shape[1]}x{img2.shape[0]}: the two images must have the same size")


def estimate_flow(img1: ImageLike, img2: ImageLike, *, weights=None, device: str = "cpu",
                  dtype: str = "fp32", options: InferenceOptions | None = None, max_side: int | None = None,
                  predictor=None, **overrides) -> np.ndarray:
    """Flow from img1 to img2 as an (H, W, 2) float32 array in pixels.

    Images are HxWx3 uint8 arrays or paths. `weights=None` uses the shipped weights.
    `max_side` downsizes large inputs for the network and scales the flow back up. `options`
    (flowcli.options.InferenceOptions) and keyword overrides such as passes=2 say what runs around
    the network.
    """
    names = tuple(str(i) if not isinstance(i, np.ndarray) else f"image {n}" for n, i in ((1, img1), (2, img2)))
    img1 = img1 if isinstance(img1, np.ndarray) else read_image(img1)
    img2 = img2 if isinstance(img2, np.ndarray) else read_image(img2)
    check_pair(img1, img2, names)
    predictor = predictor or load_predictor(weights, device=device, dtype=dtype, options=options, **overrides)
    return predictor.predict_numpy(img1, img2, max_side=max_side)


PAIR_PATTERN = re.compile(r"^(?P<id>.+)_img1$")


def find_image_pairs(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """Every `<id>_img1.*` with its `<id>_img2.*` (same suffix) in a folder, sorted by id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    pairs = []
    for first in sorted(folder.iterdir()):
        match = PAIR_PATTERN.match(first.stem)
        if match and first.suffix.lower() in IMAGE_SUFFIXES:
            second = first.with_name(f"{match['id']}_img2{first.suffix}")
            if second.is_file():
                pairs.append((match["id"], first, second))
    if not pairs:
        raise DataError(f"{folder}: no <id>_img1.* / <id>_img2.* image pairs found (video frames: add --sequence)")
    return pairs


def find_frame_pairs(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name of frame i, frame i, frame i + 1) for the images of a folder in natural name order
    (frame2 before frame10): the pairs of a video's frames. Images named `*_flow.*` are skipped:
    they are flows this command wrote as .png."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    frames = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                     and not f.stem.endswith("_flow")), key=_natural_key)
    if len(frames) < 2:
        raise DataError(f"{folder}: a sequence needs at least 2 images, found {len(frames)}")
    return [(first.stem, first, second) for first, second in zip(frames, frames[1:])]


def _natural_key(path: Path) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name) if part]


def predict_folder(folder: str | os.PathLike, out_dir: str | os.PathLike, *, weights=None,
                   device: str = "cpu", dtype: str = "fp32", options: InferenceOptions = InferenceOptions(),
                   fmt: str = "flo", sequence: bool = False,
                   on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Write `<id>_flow.<fmt>` for every `<id>_img1.*`/`<id>_img2.*` pair, or with sequence=True
    `<frame>_flow.<fmt>` from every frame to the next; decoding overlaps compute. Returns counts and pairs/s."""

    if fmt not in ("flo", "png"):
        raise DataError(f"unknown output format {fmt!r}: choose flo or png")
    pairs = find_frame_pairs(folder) if sequence else find_image_pairs(folder)
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise DataError(f"{out}: its parent folder does not exist")
    out.mkdir(exist_ok=True)
    predictor = load_predictor(weights, device=device, dtype=dtype, options=options)
    start = time.perf_counter()
    written = []

    def save(index: int, flow: np.ndarray) -> None:
        target = out / f"{pairs[index][0]}_flow.{fmt}"
        write_flow(target, flow)
        written.append(target)
        if on_progress:
            on_progress(len(written), len(pairs))

    for index, flow in iterate_predictions(predictor, [(a, b) for _, a, b in pairs]):
        save(index, flow)
    seconds = time.perf_counter() - start
    return {"pairs": len(written), "seconds": seconds, "pairs_per_s": len(written) / seconds,
            "out_dir": str(out)}




def write_flow(path: str | os.PathLike, flow: np.ndarray, *, max_flow: float | None = None) -> None:
    """Write flow as .flo (exact) or as a colour-coded .png, chosen by the suffix."""
    extension = Path(path).suffix.lower()
    if extension == ".flo":
        write_flo(path, flow)
    elif extension == ".png":
        write_image(path, flow_to_color(flow, max_flow=max_flow))
    else:
        raise FlowFormatError(f"{path}: output must end in .flo or .png, got {extension!r}")
