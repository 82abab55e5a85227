"""16-bit RGB PNG, read and written with numpy and zlib alone: the container of KITTI's flow files.

Pillow, imageio's image backend, decodes a 16-bit RGB PNG as 8-bit RGB (it drops the low byte), which
would destroy KITTI's 1/64 px flow; this module keeps every bit. It reads what libpng writes (any of
the five row filters, chosen row by row) and writes filter 0 (none) rows, which every decoder reads.
Interlaced files and other colour types / depths are refused with a message naming what was found.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (palettes refused)
MAX_SIDE = 1 << 15  # larger is a forged header, not a KITTI frame (a size that also overflows the inflate limit)


class Png16Error(ValueError):
    """Not a 16-bit PNG this module reads; the message says what the file holds instead."""


def encode_png16(image: np.ndarray, *, level: int = 6) -> bytes:
    """The bytes of an (H, W, 3) uint16 array as a 16-bit RGB PNG (big-endian samples, no filter)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint16:
        raise Png16Error(f"expected an HxWx3 uint16 array, got {tuple(image.shape)} {image.dtype}")
    height, width = image.shape[:2]
    rows = np.ascontiguousarray(image, dtype=">u2").view(np.uint8).reshape(height, width * 6)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter byte 0 on each row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decode_png16(data: bytes, name: str = "PNG") -> np.ndarray:
    """An (H, W, C) uint16 array from the bytes of a 16-bit, non-interlaced PNG (C = 1 to 4)."""
    if data[:8] != SIGNATURE:
        raise Png16Error(f"{name}: not a PNG file")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise Png16Error(f"{name}: truncated PNG ({kind.decode('latin-1')} chunk cut short)")
        if kind == b"IHDR":
            if length != 13:
                raise Png16Error(f"{name}: corrupt PNG (an IHDR chunk of {length} bytes, expected 13)")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise Png16Error(f"{name}: truncated PNG (no {'IHDR' if header is None else 'IDAT'} chunk)")
    width, height, depth, colour, _, _, interlace = header
    if depth != 16 or colour not in _CHANNELS:
        raise Png16Error(f"{name}: a PNG of {depth}-bit samples (colour type {colour}), expected 16-bit ones")
    if interlace:
        raise Png16Error(f"{name}: an interlaced PNG, which is not supported")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise Png16Error(f"{name}: corrupt PNG (an image of {height}x{width} pixels)")
    bpp = 2 * _CHANNELS[colour]  # bytes per pixel: the filters' left-neighbour distance
    try:  # inflated no further than the header's size allows: a forged stream cannot fill the memory
        raw = zlib.decompressobj().decompress(b"".join(idat), height * (1 + width * bpp) + 1)
    except zlib.error:
        raise Png16Error(f"{name}: corrupt PNG image data") from None
    if len(raw) != height * (1 + width * bpp):
        kind = "truncated" if len(raw) < height * (1 + width * bpp) else "over-long"
        raise Png16Error(f"{name}: {kind} PNG ({len(raw)} bytes of pixels, expected {height * (1 + width * bpp)})")
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * bpp)
    filters = rows[:, 0]
    if filters.max(initial=0) > 4:
        raise Png16Error(f"{name}: corrupt PNG (row filter {int(filters.max())})")
    pixels = _unfilter(rows[:, 1:].reshape(height, width, bpp), filters)
    return pixels.reshape(height, width * bpp).view(">u2").reshape(height, width, bpp // 2).astype(np.uint16)


def _unfilter(data: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Undo the row filters of (H, W, bpp) bytes. Rows with filters 0-2 only need the row above, so
    they are undone a row at a time; Average and Paeth also need the pixel to the left, so an image
    using them is undone along anti-diagonals (pixel (r, c) at step r + c, every row at once)."""
    height, width, bpp = data.shape
    out = np.zeros((height + 1, width + 1, bpp), np.int32)  # a zero row above and a zero column left
    if filters.max(initial=0) <= 2:
        for r in range(height):
            x, above = data[r].astype(np.int32), out[r, 1:]
            if filters[r] == 1:
                x = np.cumsum(x, axis=0)  # Sub: each byte adds the one bpp to its left
            elif filters[r] == 2:
                x = x + above
            out[r + 1, 1:] = x & 0xFF
        return out[1:, 1:].astype(np.uint8)
    kind = filters.astype(np.int32)
    for step in range(height + width - 1):
        r = np.arange(max(0, step - width + 1), min(height, step + 1))
        c = step - r
        x = data[r, c].astype(np.int32)
        a, b, d = out[r + 1, c], out[r, c + 1], out[r, c]  # left, above, upper left
        p = a + b - d
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - d)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, d))
        f = kind[r][:, None]
        predictor = np.select([f == 1, f == 2, f == 3, f == 4], [a, b, (a + b) >> 1, paeth], 0)
        out[r + 1, c + 1] = (x + predictor) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def read_png16(path: str | Path) -> np.ndarray:
    path = Path(path)
    return decode_png16(path.read_bytes(), str(path))
