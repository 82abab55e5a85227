"""The one file-format module: Middlebury .flo, images, atomic writes. Needs numpy and imageio only
(and Pillow, imageio's own image backend, whose pixel limit read_image applies).

Every reader validates what it reads and raises a typed error naming the file; every writer
writes atomically (temporary file in the same folder, then rename), so an interrupted or failed
write never leaves a partial output behind.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import FlowFormatError, ImageError, OutputError

FLO_MAGIC = 202021.25
FLO_MAGIC_BYTES = np.array([FLO_MAGIC], dtype="<f4").tobytes()  # b"PIEH"
UNKNOWN_FLOW_THRESHOLD = 1e9  # Middlebury: components above this mean "no ground truth here"
MAX_FLO_SIDE = 1 << 15  # anything larger is a corrupt header, not a real image
IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg", ".pgm", ".bmp")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: output folder {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {parent} ({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish(tmp_path, path)
    except OSError as exc:
        if exc.filename is not None and str(tmp_path) not in (str(exc.filename), str(exc.filename2)):
            raise
        # the temporary name (or none: a full disk) means nothing to the user: name the output instead
        raise OutputError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file onto `path` with the usual mode: mkstemp makes 0600 files,
    and some writers (safetensors) recreate the file, so the mode is set once it is written."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def check_writable(path: str | os.PathLike, *, overwrite: bool = True, inputs=()) -> Path:
    """Raise OutputError before any work when `path` cannot be written: it is one of `inputs`
    (check_not_input), its folder is missing or read-only, it is a folder, or (overwrite=False) it
    already exists. Returns it as a Path."""
    check_not_input(path, inputs)
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output folder {parent} is not writable")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass overwrite=True to replace it)")
    return path


def check_not_input(output: str | os.PathLike, inputs) -> None:
    """Refuse an output that names one of the inputs (paths; arrays and None are skipped): writing
    over them is never what was meant, overwrite or not."""
    target = Path(output).resolve()
    for source in inputs:
        if not isinstance(source, (str, os.PathLike)):
            continue
        same = Path(source).resolve() == target or (  # B.PNG is b.png where names ignore case (macOS, Windows)
            target.exists() and Path(source).exists() and os.path.samefile(source, target))
        if same:
            raise OutputError(f"{output}: is also an input ({source}); name another output")


def check_out_folder(out: Path, *, what: str) -> bool:
    """Refuse an output folder for `what` (flows, pictures) that is a file or cannot be written (or
    created: its parent must exist and be writable); True when it exists already."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file, expected a folder for the {what}")
    if not out.is_dir():
        check_writable(out)
        return False
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: output folder is not writable")
    return True


def check_out_files(out: Path, targets: list[Path], overwrite: bool, *, what: str) -> None:
    """Refuse, before any work, an output folder that cannot be written, or that already holds any
    of `targets` unless overwrite=True (then each must be replaceable: not a folder, say)."""
    if not check_out_folder(out, what=what):
        return
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        names = ", ".join(t.name for t in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise OutputError(f"{out}: {len(existing)} of the {len(targets)} {what} already exist ({names}); "
                          "overwrite=True replaces them")
    for target in existing:
        check_writable(target)


def _check_readable(path: Path, what: str, error: type[Exception]) -> None:
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, expected a {what} file")


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury .flo file as an (H, W, 2) float32 array (little-endian on every host)."""
    path = Path(path)
    _check_readable(path, ".flo", FlowFormatError)
    with open(path, "rb") as file:  # the header first: another file named .flo is not read whole
        header = file.read(12)
        if len(header) < 12:
            raise FlowFormatError(f"{path}: too short for a .flo header ({len(header)} bytes)")
        if header[:4] != FLO_MAGIC_BYTES:
            raise FlowFormatError(f"{path}: not a .flo file (starts with {header[:4]!r}, expected {FLO_MAGIC_BYTES!r})")
        width, height = (int(v) for v in np.frombuffer(header[4:12], "<i4"))
        if not (0 < width <= MAX_FLO_SIDE and 0 < height <= MAX_FLO_SIDE):
            raise FlowFormatError(f"{path}: implausible size {height}x{width} in header")
        expected = 12 + width * height * 2 * 4
        size = os.fstat(file.fileno()).st_size
        if size != expected:
            kind = "truncated" if size < expected else "over-long"
            raise FlowFormatError(f"{path}: {kind} .flo ({size} bytes, expected {expected} for {height}x{width})")
        data = file.read()
    return np.frombuffer(data, "<f4").reshape(height, width, 2).astype(np.float32)


def check_flow_array(flow: np.ndarray) -> np.ndarray:
    """Return `flow` as float32 (H, W, 2) or raise naming the shape received."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] < 1 or flow.shape[1] < 1:
        raise FlowFormatError(f"expected an HxWx2 flow array, got shape {tuple(flow.shape)}")
    return flow.astype(np.float32, copy=False)


def flo_bytes(flow: np.ndarray) -> bytes:
    """Serialise a flow array into the exact bytes of a .flo file."""
    flow = check_flow_array(flow)
    return _flo_header(flow) + np.ascontiguousarray(flow, dtype="<f4").tobytes()


def _flo_header(flow: np.ndarray) -> bytes:
    height, width = flow.shape[:2]
    return FLO_MAGIC_BYTES + np.array([width, height], dtype="<i4").tobytes()


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write an (H, W, 2) flow as a .flo file, atomically."""
    flow = check_flow_array(flow)
    # written from the array itself: a 20000x20000 flow is 3.2 GB, too much to copy into bytes first
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        file.write(_flo_header(flow))
        file.write(np.ascontiguousarray(flow, dtype="<f4").data)


def split_valid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split raw flow into (flow with unknown pixels zeroed, boolean validity mask)."""
    flow = check_flow_array(flow)
    valid = np.all(np.isfinite(flow), axis=2) & np.all(np.abs(flow) < UNKNOWN_FLOW_THRESHOLD, axis=2)
    clean = np.where(valid[..., None], flow, 0.0).astype(np.float32)
    return clean, valid


def read_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a .flo file as (flow, valid): unknown-flow pixels (>1e9) are masked, never averaged."""
    return split_valid(read_flo(path))


def read_image(path: str | os.PathLike, *, large: bool = False) -> np.ndarray:
    """Read an image as (H, W, 3) uint8: grayscale expanded to RGB, alpha dropped.

    Images over Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS) raise an ImageError
    that says so; large=True reads them anyway, for a caller that shrinks them right after (max_side).
    """
    path = Path(path)
    _check_readable(path, "image", ImageError)
    try:
        reader, limit = _open_image(path)
        with reader:
            height, width = reader.properties().shape[:2]
            too_large = not large and limit is not None and height * width > limit
            img = None if too_large else np.asarray(reader.read(**_colour_request(reader)))
    except Exception as exc:  # imageio raises many types for "not an image"
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__})") from None
    if too_large:
        raise ImageError(
            f"{path}: a {height}x{width} image is over Pillow's limit of {limit:,} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs); "
            "predict with max_side=N reads a downsized copy"
        )
    return _as_rgb(img, path)


# Pillow's pixel limit is one global: readers switch it off one at a time, for the header only
_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_image(path: Path):
    """(imageio reader, Pillow's pixel limit): the header is parsed with Pillow's own check off, so
    that it neither warns nor raises; read_image applies the limit itself, or lifts it."""
    import imageio.v3 as iio
    from PIL import Image  # imageio's decoder for these formats (a dependency of imageio)

    with _PILLOW_LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return iio.imopen(path, "r"), limit
        finally:
            Image.MAX_IMAGE_PIXELS = limit


# Pillow modes whose arrays _as_rgb reads as they come (P arrives as RGB); any other mode (CMYK,
# 1-bit, grey+alpha, ...) would be read as wrong colours, so Pillow converts it to RGB first.
_PILLOW_ARRAY_MODES = ("L", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L")


def _colour_request(reader) -> dict:
    from imageio.plugins.pillow import PillowPlugin

    if isinstance(reader, PillowPlugin) and reader.metadata().get("mode") not in _PILLOW_ARRAY_MODES:
        return {"mode": "RGB"}
    return {}


def _as_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ImageError(f"{path}: unsupported image shape {tuple(img.shape)}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image; the format follows the suffix (.ppm, .png, ...), atomically."""
    import imageio.v3 as iio

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"expected an HxWx3 uint8 image, got {tuple(image.shape)} {image.dtype}")
    path = Path(path)
    extension = path.suffix.lower()
    if extension not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: unsupported image suffix {extension!r}")
    with atomic_path(path) as tmp:
        if extension == ".ppm":  # binary P6, written by hand: exact and dependency-free
            height, width = image.shape[:2]
            tmp.write_bytes(f"P6\n{width} {height}\n255\n".encode() + image.tobytes())
        else:
            iio.imwrite(tmp, image, extension=extension)


def read_image_pair(path1: str | os.PathLike, path2: str | os.PathLike, *,
                    read: Callable[[str | os.PathLike], np.ndarray] = read_image) -> tuple[np.ndarray, np.ndarray]:
    """Read two images that must have the same size (`read` decodes one; a caching reader may stand in)."""
    img1, img2 = read(path1), read(path2)
    check_same_size(img1, img2, (str(path1), str(path2)))
    return img1, img2


def check_frame_pair(img1: np.ndarray, img2: np.ndarray, names: tuple[str, str] = ("image 1", "image 2")) -> None:
    """Raise ImageError unless both are (H, W, 3) uint8 frames of one size (what the network takes)."""
    for name, img in zip(names, (img1, img2)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ImageError(f"{name}: expected an HxWx3 uint8 image, got {tuple(img.shape)} {img.dtype}")
    check_same_size(img1, img2, names)


def check_same_size(img1: np.ndarray, img2: np.ndarray, names: tuple[str, str] = ("image 1", "image 2")) -> None:
    """Raise ImageError (sizes as HEIGHTxWIDTH) unless the two frames have the same shape."""
    if img1.shape != img2.shape:
        raise ImageError(f"{names[0]} is {img1.shape[0]}x{img1.shape[1]} but {names[1]} is "
                         f"{img2.shape[0]}x{img2.shape[1]}: the two images must have the same size")


KITTI_SCALE = 64.0  # KITTI's 16-bit PNG flow: u = (R - 2**15) / 64, v = (G - 2**15) / 64, B = 1 where valid
KITTI_OFFSET = 2 ** 15


def kitti_flow_bytes(flow: np.ndarray, valid: np.ndarray | None = None) -> bytes:
    """The bytes of a KITTI flow PNG: each component rounded to 1/64 px (clipped to +-512 px), the
    third channel 1 where `valid` (default: where the flow is known, as split_valid says), else all 0."""
    from .png16 import encode_png16

    flow, known = split_valid(flow)
    valid = known if valid is None else known & np.asarray(valid, dtype=bool)
    if valid.shape != flow.shape[:2]:
        raise FlowFormatError(f"expected an HxW valid mask for a {flow.shape[0]}x{flow.shape[1]} flow, got {valid.shape}")
    coded = np.clip(np.rint(flow.astype(np.float64) * KITTI_SCALE) + KITTI_OFFSET, 0, 2 ** 16 - 1)
    image = np.concatenate([coded, valid[..., None]], axis=2).astype(np.uint16)
    image[~valid] = 0  # the devkit writes invalid pixels as (0, 0, 0)
    return encode_png16(image)


def write_kitti_flow(path: str | os.PathLike, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write flow as a KITTI 16-bit PNG (exact to 1/64 px within +-512 px), atomically."""
    data = kitti_flow_bytes(flow, valid)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_kitti_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI 16-bit PNG flow as (flow (H, W, 2) float32, valid (H, W) bool); invalid pixels
    read as 0 and are masked, as the devkit's `(v - 2**15) / 64` with the third channel's bit."""
    from .png16 import Png16Error, read_png16

    path = Path(path)
    _check_readable(path, "KITTI flow .png", FlowFormatError)
    try:
        image = read_png16(path)
    except Png16Error as exc:
        raise FlowFormatError(f"{exc} (a KITTI flow is a 16-bit RGB PNG)") from None
    if image.shape[2] != 3:
        raise FlowFormatError(f"{path}: a 16-bit PNG with {image.shape[2]} channels, a KITTI flow has 3")
    valid = image[..., 2] > 0
    flow = (image[..., :2].astype(np.float32) - KITTI_OFFSET) / KITTI_SCALE
    return np.where(valid[..., None], flow, 0.0).astype(np.float32), valid


def write_gray_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W) uint8 or uint16 array as a grayscale PNG (8 or 16 bits), atomically: occlusion
    masks (255 = occluded) and confidence maps (65535 = 1.0). Pillow at zlib level 1: `flowcli synth`
    writes a mask per pair, and the default level took twice as long for files a few % smaller."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"expected an HxW uint8 or uint16 image, got {tuple(image.shape)} {image.dtype}")
    if Path(path).suffix.lower() != ".png":
        raise ImageError(f"{path}: a mask or confidence map is written as .png, got {Path(path).suffix!r}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG", compress_level=1)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG (`<id>_occ.png`: 255 = occluded) as an (H, W) bool array (True where >= half)."""
    import imageio.v3 as iio

    path = Path(path)
    _check_readable(path, "mask", ImageError)
    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:
        raise ImageError(f"{path}: not a readable image ({type(exc).__name__})") from None
    if img.ndim == 3:
        img = img[..., 0]
    if img.ndim != 2:
        raise ImageError(f"{path}: expected a grayscale mask, got shape {tuple(img.shape)}")
    half = 32768 if img.dtype == np.uint16 else 128
    return img >= half
