"""Flow for a video file, streamed: a background thread decodes (and shrinks, for max_side) the next
frames while the network runs on the current pair; only the previous frame and a few flows are held,
so memory does not grow with the clip. Flows go to a folder (`<frame>_flow.flo|png`) or into a
colour-coded video whose colour scale is one for the whole clip, so colours do not flicker."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..data.prefetch import read_ahead
from ..errors import DataError, FlowcliError, ImageError, OutputError
from ..io import check_out_folder, check_writable
from ..results import JsonResult
from ..video import (
    DEFAULT_RATE, VIDEO_OUTPUT_SUFFIXES, VIDEO_SUFFIXES, Position, VideoInfo, VideoWriter, parse_position, probe_video,
    read_frames,
)
from ..viz import check_max_flow, flow_to_color
from .engine import load_predictor
from .options import InferenceOptions
from .predict import FLOW_SUFFIXES, write_flow
from .resize import check_max_side, max_side_warning, resize_flow, resize_frame

SCALE_FLOWS = 8  # without max_flow, the colour scale comes from this many first flows ...
SCALE_PERCENTILE = 99  # ... as this percentile of |flow|: robust to a few wild pixels
MIN_SCALE = 1.0  # px: a still clip is not shown as if sub-pixel noise were full motion
READ_AHEAD = 4  # decoded frames waiting for the network: enough to hide decoding, a few MB each


@dataclass(frozen=True)
class PredictVideoResult(JsonResult):
    """What predict_video wrote, and how fast (decoding, network and writing, end to end)."""

    video: str
    output: str
    to_video: bool  # a colour-coded video (else a folder of <frame>_flow.* files)
    frames: int  # frames read in the selection (start, start + every, ... before end)
    flows: int  # flows written: one from each of those frames to the next
    first_frame: int
    every: int
    height: int
    width: int
    seconds: float
    frames_per_s: float  # flows written per second end to end; with every=1, video frames per second
    max_flow: float | None  # colour scale: |flow| in px shown fully saturated (None for .flo files)
    scale_from: str  # where max_flow came from
    warnings: tuple[str, ...] = ()


def predict_video(video: str | os.PathLike, output: str | os.PathLike, *, weights=None, device: str = "auto",
                  dtype: str = "fp32", options: InferenceOptions | None = None, fmt: str = "flo", every: int = 1,
                  start: int | str | Position | None = None, end: int | str | Position | None = None,
                  max_side: int | None = None, max_flow: float | None = None, side_by_side: bool = False,
                  overwrite: bool = False, predictor=None,
                  on_progress: Callable[[int, int | None], None] | None = None) -> PredictVideoResult:
    """Flow from each selected frame of `video` to the next selected one.

    Frames start, start + every, ... before end are selected (frame indices, or seconds as "2.5s").
    `output` is a folder (created if missing; `<frame index>_flow.<fmt>` files, refused when it holds
    such flows already unless overwrite=True) or a .mp4/.mov/.mkv file: the flow colour-coded, beside
    the frame with side_by_side=True. PNG and video colours share one scale: `max_flow`, else the
    99th percentile of |flow| over the first 8 flows. A frame that cannot be decoded stops the run
    with its index; the flows before it stay written, each complete (a video is closed so it plays).
    `on_progress(done, total)` gets total None when the container does not say its frame count.
    A loaded `predictor` (engine.Predictor) may stand in for weights/device/dtype/options.
    """
    check_max_side(max_side)
    check_max_flow(max_flow)
    if every < 1:
        raise DataError(f"every={every}: must be at least 1")
    if f".{fmt}" not in FLOW_SUFFIXES:
        raise DataError(f"fmt={fmt!r}: choose flo or png")
    first, last = parse_position(start, "start") or Position(frame=0), parse_position(end, "end")
    out = Path(output)
    to_video = out.suffix.lower() in VIDEO_OUTPUT_SUFFIXES
    _check_output(out, to_video=to_video, fmt=fmt, side_by_side=side_by_side, overwrite=overwrite, inputs=(video,))
    info = probe_video(video)
    expected = _check_selection(video, info, first, last, every)
    predictor = predictor or load_predictor(weights, device=device, dtype=dtype, options=options)

    rate = (info.rate or DEFAULT_RATE) / every
    sink = _VideoSink(out, rate, side_by_side) if to_video else _FolderSink(out, fmt)
    colours = _ColourScale(sink, max_flow) if to_video or fmt == "png" else None
    begin = time.perf_counter()
    frames, done, size, previous, first_index = 0, 0, None, None, 0
    # Only decoding runs ahead in a thread: shrinking there (torch) ran two OpenMP teams on 2 cores
    # at once, which stalled both (benchmarks/README.md, Decisions, Video).
    decoded = read_ahead(read_frames(video, start=first, end=last, every=every), depth=READ_AHEAD,
                         name="flowcli-video")
    try:
        for index, small, frame, frame_size in _shrunk(decoded, max_side, keep=side_by_side):
            frames += 1
            if size is None:
                size, first_index = frame_size, index
                sink.size = size
            elif frame_size != size:
                raise ImageError(f"{video}: frame {index} is {frame_size[0]}x{frame_size[1]}, "
                                 f"frame {previous[0]} {size[0]}x{size[1]}")
            if previous is not None:
                flow = predictor.predict_uint8(previous[1][None], small[None])[0]
                # a flow video is coloured at the network's size and its picture enlarged (4x fewer
                # pixels to colour at 720p with --max-side 640); files get the flow at the frame's size
                flow = _in_frame_pixels(flow, *size) if to_video else resize_flow(flow, *size)
                (colours or sink).add(previous[0], flow, previous[2])
                done += 1
                if on_progress:
                    on_progress(done, expected)
            previous = (index, small, frame)
    except FlowcliError as exc:
        kept = _finish(colours, sink)
        if not kept:
            sink.remove_empty()
            raise
        raise type(exc)(f"{exc}; the {kept} flow{'s' * (kept != 1)} before it are in {out}") from None
    except BaseException:
        _finish(colours, sink)
        raise
    finally:
        decoded.close()  # stops the decoding thread and closes the clip now, not when collected
    _finish(colours, sink)
    if frames < 2:
        sink.remove_empty()
        raise DataError(f"{video}: {_selection_text(first, last, every)} select{'s' * (frames == 1)} {frames} "
                        f"frame{'s' * (frames != 1)}; a flow needs 2")
    seconds = time.perf_counter() - begin
    warning = max_side_warning(*size, max_side)
    scale = colours.scale if colours else None
    return PredictVideoResult(str(video), str(out), to_video, frames, done, first_index, every,
                              int(size[0]), int(size[1]), seconds, done / max(seconds, 1e-9), scale,
                              colours.source if colours else "", (warning,) if warning else ())


def _shrunk(frames, max_side: int | None, *, keep: bool):
    """(index, frame as the network sees it, the frame itself when kept, its size)."""
    for frame in frames:
        small = resize_frame(frame.image, max_side) if max_side is not None else frame.image
        yield frame.index, small, frame.image if keep else None, frame.image.shape[:2]


def _in_frame_pixels(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """A flow of the network's (h, w) size in pixels of the (height, width) frame, not resized."""
    h, w = flow.shape[:2]
    return flow if (h, w) == (height, width) else flow * np.array([width / w, height / h], np.float32)


def _finish(colours: "_ColourScale | None", sink) -> int:
    """Write the flows held back for the colour scale, close the output; the number written."""
    try:
        if colours is not None:
            colours.flush()
    finally:
        sink.close()
    return sink.written


def _check_output(out: Path, *, to_video: bool, fmt: str, side_by_side: bool, overwrite: bool, inputs=()) -> None:
    """Refuse, before any work, an output that cannot be written, names an input or would replace
    finished flows."""
    if to_video:
        check_writable(out, overwrite=overwrite, inputs=inputs)
        if fmt != "flo":
            raise DataError(f"fmt={fmt}: applies to a folder of flows, not to a video output ({out.name})")
        return
    suffix = out.suffix.lower()
    if suffix in FLOW_SUFFIXES or suffix in VIDEO_SUFFIXES:
        raise OutputError(f"{out}: a video's flows go to a folder or into a video "
                          f"({', '.join(VIDEO_OUTPUT_SUFFIXES)}), not to a {suffix} file")
    if side_by_side:
        raise DataError(f"side_by_side=True: needs a video output ({', '.join(VIDEO_OUTPUT_SUFFIXES)}), not a folder")
    if not check_out_folder(out, what="flows"):
        return
    pattern = re.compile(rf"^\d+_flow\.{fmt}$")
    existing = sorted(p.name for p in out.iterdir() if pattern.match(p.name))
    if existing and not overwrite:
        names = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise OutputError(f"{out}: already holds {len(existing)} flow{'s' * (len(existing) != 1)} of a video "
                          f"({names}); overwrite=True replaces them")


def _check_selection(video, info: VideoInfo, first: Position, last: Position | None, every: int) -> int | None:
    """Refuse before any work what the header already shows to be empty; the expected flow count."""
    start = first.as_frame(info.rate)
    end = last.as_frame(info.rate) if last is not None else None
    if start is not None and end is not None and start >= end:
        raise DataError(f"start={first}: is not before end={last}")
    if info.frames is None or start is None:
        return None
    if info.exact and info.frames < 2:
        raise DataError(f"{video}: has {info.frames} frame; a flow needs 2")
    if info.exact and start >= info.frames:
        raise DataError(f"start={first}: beyond the video's {info.frames} frames (0 to {info.frames - 1})")
    count = len(range(start, min(end if end is not None else info.frames, info.frames), every))
    if info.exact and count < 2:
        raise DataError(f"{video}: {_selection_text(first, last, every)} select {count} of its {info.frames} "
                        f"frames; a flow needs 2")
    return max(count - 1, 0) or None


def _selection_text(first: Position, last: Position | None, every: int) -> str:
    parts = [f"start={first}"] + ([f"end={last}"] if last is not None else []) + [f"every={every}"]
    return ", ".join(parts)


def robust_max_flow(flows: list[np.ndarray]) -> float:
    """The colour scale from some flows: the 99th percentile of |flow| over their pixels, at least 1 px."""
    magnitudes = np.concatenate([np.hypot(f[..., 0], f[..., 1]).ravel() for f in flows])
    magnitudes = magnitudes[np.isfinite(magnitudes)]
    top = float(np.percentile(magnitudes, SCALE_PERCENTILE)) if magnitudes.size else 0.0
    return max(top, MIN_SCALE)


class _ColourScale:
    """Passes flows on to a sink with one colour scale: max_flow, or found from the first flows,
    which are held back (SCALE_FLOWS of them) until it is known."""

    def __init__(self, sink, max_flow: float | None):
        self.sink = sink
        self.scale = max_flow
        self.source = f"max_flow={max_flow:g}" if max_flow is not None else ""
        self._held: list[tuple] = []

    def add(self, index: int, flow: np.ndarray, frame) -> None:
        if self.scale is not None:
            self.sink.add(index, flow, frame, self.scale)
            return
        self._held.append((index, flow, frame))
        if len(self._held) >= SCALE_FLOWS:
            self.flush()

    def flush(self) -> None:
        if not self._held:
            return
        if self.scale is None:
            self.scale = robust_max_flow([flow for _, flow, _ in self._held])
            self.source = (f"{SCALE_PERCENTILE}th percentile of |flow| over the first {len(self._held)} "
                           f"flow{'s' * (len(self._held) != 1)}")
        held, self._held = self._held, []
        for index, flow, frame in held:
            self.sink.add(index, flow, frame, self.scale)


class _FolderSink:
    """`<frame index>_flow.<fmt>` files, each written atomically."""

    def __init__(self, out: Path, fmt: str):
        self.out, self.fmt, self.written = out, fmt, 0
        out.mkdir(exist_ok=True)

    def add(self, index: int, flow: np.ndarray, frame, scale: float | None = None) -> None:
        write_flow(self.out / f"{index:06d}_flow.{self.fmt}", flow, max_flow=scale)
        self.written += 1

    def close(self) -> None:
        pass

    def remove_empty(self) -> None:
        if not self.written and not any(self.out.iterdir()):
            self.out.rmdir()


class _VideoSink:
    """The flow colour-coded, one video frame per flow; the frame itself on the left with side_by_side."""

    def __init__(self, out: Path, rate: Fraction, side_by_side: bool):
        self.writer = VideoWriter(out, rate=rate)
        self.side_by_side = side_by_side
        self.size: tuple[int, int] | None = None  # (H, W) of the clip's frames, known at its first frame
        self.written = 0

    def add(self, index: int, flow: np.ndarray, frame, scale: float | None = None) -> None:
        image = flow_to_color(flow, max_flow=scale)
        if image.shape[:2] != self.size:
            image = np.asarray(Image.fromarray(image).resize(self.size[::-1], Image.BILINEAR))
        if self.side_by_side:
            image = np.concatenate([frame, image], axis=1)
        self.writer.write(image)
        self.written += 1

    def close(self) -> None:
        self.writer.close()

    def remove_empty(self) -> None:
        pass  # close() leaves no file without frames
