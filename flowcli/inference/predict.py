"""Prediction API: two images (arrays or paths) -> an HxWx2 flow, written to a file or returned; or a
whole folder of pairs."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError, FlowFormatError, OutputError
from ..io import IMAGE_SUFFIXES, check_frame_pair, check_out_files, check_writable, read_image, write_flo, write_image
from ..results import JsonResult
from ..viz import flow_to_color
from .batching import iterate_predictions
from .engine import load_predictor
from .occlusion import CheckedFlow, predict_checked_uint8
from .options import InferenceOptions
from .resize import check_max_side, max_side_warning, resize_flow, resize_for_max_side

ImageLike = np.ndarray | str | os.PathLike
FLOW_SUFFIXES = (".flo", ".png")


@dataclass(frozen=True)
class PredictResult(JsonResult):
    """What predict_file wrote: the flow's size, its mean and largest magnitude, and warnings."""

    output: str
    height: int
    width: int
    mean_flow: float  # mean |flow| in px
    max_flow: float  # largest |flow| in px
    warnings: tuple[str, ...] = ()
    occluded_share: float | None = None  # fb_check: share of pixels that failed the check
    written: tuple[str, ...] = ()  # fb_check: the mask and confidence files written


@dataclass(frozen=True)
class PredictFolderResult(JsonResult):
    """What predict_folder wrote, and how fast (decoding, network and writing, end to end)."""

    pairs: int
    seconds: float
    pairs_per_s: float
    out_dir: str
    warnings: tuple[str, ...] = ()


def estimate_flow(img1: ImageLike, img2: ImageLike, *, weights=None, device: str = "auto",
                  dtype: str = "fp32", options: InferenceOptions | None = None, max_side: int | None = None,
                  predictor=None, fb_check: bool = False, **overrides) -> np.ndarray | CheckedFlow:
    """Flow from img1 to img2 as an (H, W, 2) float32 array in pixels.

    Images are HxWx3 uint8 arrays or paths. `weights=None` uses the shipped weights.
    `max_side` downsizes large inputs for the network (reading even images over Pillow's pixel
    limit) and scales the flow back up; `resize.max_side_warning` says when it shrinks too far.
    `options` (InferenceOptions) and keyword overrides such as passes=2 say what runs around the network.
    `fb_check=True` also predicts the backward flow in the same batch and returns a CheckedFlow
    (.flow, .occluded, .confidence, .backward; flowcli.inference.occlusion).
    """
    check_max_side(max_side)
    names = tuple(str(i) if not isinstance(i, np.ndarray) else f"image {n}" for n, i in ((1, img1), (2, img2)))
    img1, img2 = (i if isinstance(i, np.ndarray) else read_image(i, large=max_side is not None) for i in (img1, img2))
    check_frame_pair(img1, img2, names)
    predictor = predictor or load_predictor(weights, device=device, dtype=dtype, options=options, **overrides)
    height, width = img1.shape[:2]
    # shrunk here, not in predict_numpy, so that huge frames are freed before the flow is resized back
    img1, img2, _ = resize_for_max_side(img1, img2, max_side) if max_side is not None else (img1, img2, 1.0)
    if fb_check:
        return predict_checked_uint8(predictor, img1, img2, height, width)
    return resize_flow(predictor.predict_numpy(img1, img2), height, width)


def predict_file(img1: ImageLike, img2: ImageLike, output: str | os.PathLike, *, weights=None,
                 device: str = "auto", dtype: str = "fp32", options: InferenceOptions | None = None,
                 max_side: int | None = None, overwrite: bool = False, **overrides) -> PredictResult:
    """estimate_flow, written to `output` (.flo exact, .png colour-coded). The output is checked
    before any work: an existing file is refused unless overwrite=True, an input always."""
    output = check_writable(output, overwrite=overwrite, inputs=(img1, img2))
    check_flow_suffix(output)
    flow = estimate_flow(img1, img2, weights=weights, device=device, dtype=dtype, options=options,
                         max_side=max_side, **overrides)
    write_flow(output, flow)
    return _predict_result(output, flow, max_side)


def _predict_result(output, flow: np.ndarray, max_side: int | None, occluded_share: float | None = None,
                    written: tuple[str, ...] = ()) -> PredictResult:
    """What predict_file and predict_file_checked report of the flow they wrote."""
    height, width = flow.shape[:2]
    magnitude = np.hypot(flow[..., 0], flow[..., 1])  # np.linalg.norm is much slower on a huge flow
    warning = max_side_warning(height, width, max_side)
    return PredictResult(str(output), height, width, float(magnitude.mean()), float(magnitude.max()),
                         (warning,) if warning else (), occluded_share, written)


def find_frame_pairs(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name of frame i, frame i, frame i + 1) for the images of a folder in natural name order
    (frame2 before frame10): the pairs of a video's frames. Images named `*_flow.*`, `*_occ.*` and
    `*_conf.*` are skipped: they are flows, masks and confidences this command wrote as .png."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    frames = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                     and not f.stem.endswith(("_flow", "_occ", "_conf")) and not f.name.startswith(".")),
                    key=_natural_key)
    if len(frames) < 2:
        raise DataError(f"{folder}: a sequence needs at least 2 images, found {len(frames)}")
    return [(first.stem, first, second) for first, second in zip(frames, frames[1:])]


def _natural_key(path: Path) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name) if part]


def predict_folder(folder: str | os.PathLike, out_dir: str | os.PathLike, *, weights=None,
                   device: str = "auto", dtype: str = "fp32", options: InferenceOptions | None = None,
                   fmt: str = "flo", sequence: bool = False, max_side: int | None = None,
                   overwrite: bool = False,
                   on_progress: Callable[[int, int], None] | None = None,
                   layout: str = "auto", sintel_pass: str = "clean", fb_check: bool = False,
                   mask_invalid: bool = False) -> PredictFolderResult:
    """Write `<id>_flow.<fmt>` for every `<id>_img1.*`/`<id>_img2.*` pair, or with sequence=True
    `<frame>_flow.<fmt>` from every frame to the next; decoding overlaps compute. A folder (or list
    file) in another dataset layout (data/layouts; detected unless `layout` names one) gives its
    pairs' ids (Sintel's `<scene>/frame_####` writes into a folder per scene).

    `out_dir` is created if missing; flows already in it are refused before any work unless
    overwrite=True. `max_side` as for estimate_flow. `fb_check=True` also writes `<id>_occ.png`
    (255 = occluded or unreliable) and `<id>_conf.png` (16-bit confidence); `mask_invalid=True`
    (implies it) sets the occluded pixels of a .flo to unknown (1e10).
    """
    fb_check = fb_check or mask_invalid
    if mask_invalid and fmt != "flo":
        raise OutputError(f"mask_invalid=True: only a .flo has unknown values, got fmt={fmt}")
    if f".{fmt}" not in FLOW_SUFFIXES:
        raise DataError(f"fmt={fmt!r}: choose flo or png")
    check_max_side(max_side)
    pairs = find_frame_pairs(folder) if sequence else layout_pairs(folder, layout, sintel_pass)
    out = Path(out_dir)
    if not sequence and out.resolve() == Path(folder).resolve():
        raise OutputError(f"{out}: is the dataset folder, whose <id>_flow.* are its ground truth; "
                          "write the predictions to another folder")
    targets = [out / f"{name}_flow.{fmt}" for name, _, _ in pairs]
    twice = next((target for target, count in Counter(targets).items() if count > 1), None)
    if twice is not None:  # f1.png and f1.jpg, say: the second flow would replace the first
        raise DataError(f"{folder}: two inputs would both be written as {twice.relative_to(out)}; rename one of them")
    escaping = next((t for t in targets if not t.resolve().is_relative_to(out.resolve())), None)
    if escaping is not None:  # an id is a name, never a path (data/layouts): a bug if this is reached
        raise OutputError(f"{escaping}: would be written outside {out}")
    extras = [out / f"{name}_{kind}.png" for name, _, _ in pairs for kind in ("occ", "conf")] if fb_check else []
    check_out_files(out, targets + extras, overwrite, what="flows")
    try:
        out.mkdir(exist_ok=True)
        for parent in sorted({t.parent for t in targets} - {out}):
            parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    predictor = load_predictor(weights, device=device, dtype=dtype, options=options)
    start = time.perf_counter()
    warnings: dict[str, None] = {}  # one line per distinct frame size, in order
    predictions = iterate_predictions(predictor, [(a, b) for _, a, b in pairs], max_side=max_side, fb_check=fb_check)
    for done, (index, flow) in enumerate(predictions, 1):
        if fb_check:
            flow = write_checked(flow, targets[index], out / f"{pairs[index][0]}_occ.png",
                                 out / f"{pairs[index][0]}_conf.png", mask_invalid=mask_invalid)
        else:
            write_flow(targets[index], flow)
        warnings.setdefault(max_side_warning(*flow.shape[:2], max_side))
        if on_progress:
            on_progress(done, len(pairs))
    seconds = time.perf_counter() - start
    return PredictFolderResult(len(pairs), seconds, len(pairs) / max(seconds, 1e-9), str(out),
                               tuple(w for w in warnings if w))


def layout_pairs(folder: str | os.PathLike, layout: str = "auto",
                 sintel_pass: str = "clean") -> list[tuple[str, Path, Path]]:
    """(id, image 1, image 2) of a folder of `<id>_img1.*`/`<id>_img2.*` pairs, as always, or of a
    folder (or list file) in another dataset layout; ground truth is not needed."""
    from ..data.layouts import detect_layout, find_pairs

    if layout == "auto" and Path(folder).is_dir():
        layout = detect_layout(folder) or "chairs"
    if layout == "chairs" and not Path(folder).is_dir():
        raise DataError(f"{folder}: not a folder")
    try:
        found = find_pairs(folder, layout=layout, sintel_pass=sintel_pass, need_flow=False)
    except DataError:
        if layout != "chairs":
            raise
        # find_pairs' Flying Chairs message asks for flows too, which predict does not need
        raise DataError(f"{folder}: no <id>_img1.* / <id>_img2.* image pairs found "
                        "(video frames: add --sequence)") from None
    return [(s.id, s.img1, s.img2) for s in found.samples]


def check_flow_suffix(path: str | os.PathLike) -> None:
    """A flow is written as .flo (exact) or .png (colour-coded)."""
    extension = Path(path).suffix.lower()
    if extension not in FLOW_SUFFIXES:
        raise FlowFormatError(f"{path}: output must end in .flo or .png, got {extension!r}")


def write_flow(path: str | os.PathLike, flow: np.ndarray, *, max_flow: float | None = None) -> None:
    """Write flow as .flo (exact) or as a colour-coded .png, chosen by the suffix."""
    check_flow_suffix(path)
    if Path(path).suffix.lower() == ".flo":
        write_flo(path, flow)
    else:
        write_image(path, flow_to_color(flow, max_flow=max_flow))


def check_fb_outputs(output: str | os.PathLike, mask: str | os.PathLike | None,
                     confidence: str | os.PathLike | None, mask_invalid: bool, *, overwrite: bool = False,
                     inputs=()) -> None:
    """The --fb-check outputs of one pair, checked before any work: writable .png files (existing
    ones only with overwrite=True, never an input), and mask_invalid only for a .flo (a colour .png
    has no unknown value)."""
    for name, path in (("mask", mask), ("confidence", confidence)):
        if path is not None:
            check_writable(path, overwrite=overwrite, inputs=inputs)
            if Path(path).suffix.lower() != ".png":
                raise OutputError(f"{name}={path}: must end in .png, got {Path(path).suffix!r}")
    if mask_invalid and Path(output).suffix.lower() != ".flo":
        raise OutputError(f"mask_invalid=True: only a .flo has unknown values, got {output}")
    named = [("output", output), ("mask", mask), ("confidence", confidence)]
    seen: dict[Path, tuple[str, object]] = {}
    for name, path in ((n, p) for n, p in named if p is not None):
        other, other_path = seen.setdefault(Path(path).resolve(), (name, path))
        if other != name:
            raise OutputError(f"{name}={path}: the same file as {other}={other_path}; each output needs its own name")


def write_checked(checked: CheckedFlow, output: str | os.PathLike, mask: str | os.PathLike | None,
                  confidence: str | os.PathLike | None, *, mask_invalid: bool = False) -> np.ndarray:
    """Write a CheckedFlow's flow (occluded pixels unknown with mask_invalid), mask and confidence;
    returns the flow as written."""
    from ..io import write_gray_png
    from .occlusion import confidence_to_uint16, mask_to_uint8

    flow = checked.masked_flow() if mask_invalid else checked.flow
    write_flow(output, flow)
    if mask is not None:
        write_gray_png(mask, mask_to_uint8(checked.occluded))
    if confidence is not None:
        write_gray_png(confidence, confidence_to_uint16(checked.confidence))
    return flow


def predict_file_checked(img1: ImageLike, img2: ImageLike, output: str | os.PathLike, *,
                         mask: str | os.PathLike | None = None, confidence: str | os.PathLike | None = None,
                         mask_invalid: bool = False, weights=None, device: str = "auto", dtype: str = "fp32",
                         options: InferenceOptions | None = None, max_side: int | None = None,
                         overwrite: bool = False, **overrides) -> PredictResult:
    """predict_file with the forward-backward check (estimate_flow's fb_check): also writes the mask
    PNG (255 = occluded or unreliable) and the 16-bit confidence PNG where named; mask_invalid=True
    sets the occluded pixels of the .flo to unknown (UNKNOWN, 1e10). Every output is checked before
    any work, as predict_file checks its one."""
    output = check_writable(output, overwrite=overwrite, inputs=(img1, img2))
    check_flow_suffix(output)
    check_fb_outputs(output, mask, confidence, mask_invalid, overwrite=overwrite, inputs=(img1, img2))
    checked = estimate_flow(img1, img2, weights=weights, device=device, dtype=dtype, options=options,
                            max_side=max_side, fb_check=True, **overrides)
    write_checked(checked, output, mask, confidence, mask_invalid=mask_invalid)
    return _predict_result(output, checked.flow, max_side, checked.occluded_share,
                           tuple(str(p) for p in (mask, confidence) if p is not None))
