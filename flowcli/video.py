"""Video files: frames read one at a time (never the whole clip), a clip's size and frame count, and
colour frames written as H.264. Needs numpy and PyAV (`av`, the optional "video" extra) only.

Frame positions are frame indices (12) or seconds ("2.5s"); a range is half-open, as Python's
slices: start <= frame < end. Like io.py, the writer is atomic: frames go to a temporary file that
is renamed onto the output when it is closed, even after a failure, so that what was written plays.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataError, FlowcliError, ImageError, OutputError
from .io import publish

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")  # containers that take H.264
INSTALL_HINT = 'pip install -e ".[video]"'
DEFAULT_RATE = Fraction(25)  # for a container that states no frame rate


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def require_av():
    """The PyAV module, or one line saying how to install it."""
    try:
        import av
    except ImportError:
        raise FlowcliError(f"video files need PyAV, the 'video' extra: {INSTALL_HINT}") from None
    return av


@dataclass(frozen=True)
class Position:
    """A point in a clip: a frame index, or a time in seconds from the clip's first frame."""

    frame: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return f"{self.seconds:g}s" if self.seconds is not None else str(self.frame)

    def as_frame(self, rate: Fraction | None) -> int | None:
        """The index of the first frame at or after this position (None: seconds in a clip without a rate)."""
        if self.seconds is None:
            return self.frame
        return None if rate is None else int(np.ceil(self.seconds * float(rate) - 1e-6))


def parse_position(value: int | str | Position | None, name: str) -> Position | None:
    """12 or "12" -> frame 12; "2.5s" -> 2.5 seconds; None stays None. `name` is the parameter's."""
    if value is None or isinstance(value, Position):
        return value
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*s", text)
    if match:
        return Position(seconds=float(match[1]))
    if re.fullmatch(r"\d+", text):
        return Position(frame=int(text))
    raise DataError(f"{name}={value}: expected a whole frame index (12) or seconds ending in s (2.5s), not negative")


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream before any frame is decoded."""

    height: int
    width: int
    rate: Fraction | None  # frames per second (average), None when the container states none
    frames: int | None  # frame count: the container's own, else estimated from duration x rate
    exact: bool  # frames is the container's own count, not an estimate


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and frame count of a video file's first video stream."""
    av = require_av()
    path = _check_video(path)
    with _open(av, path) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate) if stream.average_rate else None
        frames, exact = (stream.frames, True) if stream.frames > 0 else (None, False)
        if frames is None and rate is not None and container.duration:
            frames = max(1, round(container.duration / 1_000_000 * float(rate)))
        return VideoInfo(stream.height, stream.width, rate, frames, exact)


@dataclass(frozen=True)
class Frame:
    index: int  # position in the clip, counted from 0
    seconds: float  # time since the clip's first frame
    image: np.ndarray  # (H, W, 3) uint8 RGB


def read_frames(path: str | os.PathLike, *, start: Position | None = None, end: Position | None = None,
                every: int = 1) -> Iterator[Frame]:
    """The frames start, start + every, ... before end, decoded one at a time, in order.

    A frame that cannot be decoded raises ImageError naming its index. Frames before `start` are
    decoded (frame-exact positions need it) but not converted. A clip that ends well before the
    count in its header is reported as truncated.
    """
    av = require_av()
    path = _check_video(path)
    if every < 1:
        raise DataError(f"every={every}: must be at least 1")
    start = start or Position(frame=0)
    info = probe_video(path)
    index, first, origin = -1, None, None
    with _open(av, path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: H.264 at 720p decodes in ~4 ms a frame
        decoded = container.decode(stream)
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except Exception as exc:  # FFmpeg raises InvalidDataError and others for damaged data
                raise ImageError(f"{path}: frame {index + 1} cannot be decoded ({_reason(exc)})") from None
            index += 1
            origin = frame.time if origin is None else origin
            _check_no_gap(path, frame.time, origin, index, info.rate)
            seconds = (frame.time - origin) if frame.time is not None else index / float(info.rate or DEFAULT_RATE)
            if end is not None and _reached(end, index, seconds):
                return
            if first is None and not _reached(start, index, seconds):
                continue
            first = index if first is None else first
            if (index - first) % every:
                continue
            try:
                image = frame.to_ndarray(format="rgb24")
            except Exception as exc:
                raise ImageError(f"{path}: frame {index} cannot be decoded ({_reason(exc)})") from None
            yield Frame(index, seconds, image)
    if info.frames is not None and _short(index + 1, info.frames, info.exact):
        raise ImageError(f"{path}: frame {index + 1} is missing: the video stops after {index + 1} of the "
                         f"{info.frames} frames its header announces (truncated?)")


def _check_no_gap(path: Path, time: float | None, origin: float | None, index: int, rate: float | None) -> None:
    """A damaged frame that FFmpeg drops without an error would shift every later index (and flow
    name): stop where the timestamps skip more than half a frame past the expected one."""
    if time is None or origin is None or not rate:
        return
    expected = round((time - origin) * rate)
    if expected > index:
        raise ImageError(f"{path}: frame {index} cannot be decoded (the decoder skipped to the frame at "
                         f"{time - origin:.3f} s, frame {expected}; damaged, or a variable frame rate)")


def _short(decoded: int, announced: int, exact: bool) -> bool:
    """Whether a clip ended before the frame count in its header: any shortfall of an exact count, or
    over 10 % (and 2 frames) of one estimated from the duration, which is only approximate."""
    return decoded < announced if exact else announced - decoded > max(2, announced // 10)


def _reached(position: Position, index: int, seconds: float) -> bool:
    if position.seconds is not None:
        return seconds >= position.seconds - 1e-6
    return index >= position.frame


def _check_video(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, expected a video file")
    return path


def _open(av, path: Path, mode: str = "r", **kwargs):
    try:
        container = av.open(str(path), mode, **kwargs)
    except Exception as exc:
        raise ImageError(f"{path}: not a readable video ({_reason(exc)})") from None
    if mode == "r" and not container.streams.video:
        container.close()
        raise ImageError(f"{path}: holds no video stream")
    return container


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words without its errno and file name ('Invalid data found when processing input')."""
    return getattr(exc, "strerror", None) or type(exc).__name__


class VideoWriter:
    """(H, W, 3) uint8 RGB frames -> an H.264 video (yuv420p, sides padded to even with black).

    Written to a temporary file beside `path` and renamed onto it by close(), also after an error, so
    that the frames written so far play; nothing is left behind when no frame was written.
    """

    def __init__(self, path: str | os.PathLike, *, rate: Fraction | float = DEFAULT_RATE, crf: int = 18):
        self._av = require_av()
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
            raise OutputError(f"{self.path}: a video output must end in {', '.join(VIDEO_OUTPUT_SUFFIXES)}")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._rate = Fraction(rate).limit_denominator(100_000)
        self._crf = crf
        try:
            self._container = _open(self._av, self._tmp, "w")
        except BaseException:
            self._tmp.unlink()
            raise
        self._stream = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        if self._stream is None:
            codec = "libx264" if "libx264" in self._av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=self._rate)
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"  # what every player decodes
            if codec == "libx264":
                self._stream.options = {"crf": str(self._crf), "preset": "veryfast"}
        elif (height + height % 2, width + width % 2) != (self._stream.height, self._stream.width):
            raise ImageError(f"{self.path}: frame {self.frames} is {height}x{width}, the video's "
                             f"{self._stream.height}x{self._stream.width}")
        if height % 2 or width % 2:
            image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)))
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, close the container and move it onto the output (when it holds frames)."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
            if self.frames:
                publish(self._tmp, self.path)
        finally:
            self._container = None
            if self._tmp.exists():
                self._tmp.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
