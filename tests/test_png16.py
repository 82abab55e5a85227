"""16-bit PNG codec: reads every row filter libpng may choose (checked against an encoder written
here from the PNG specification) and files OpenCV (libpng) writes; what it writes, libpng reads."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from flowcli.png16 import Png16Error, decode_png16, encode_png16


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def spec_encode(image: np.ndarray, filters: list[int]) -> bytes:
    """A 16-bit PNG with the given filter on each row, byte by byte as the specification says."""
    height, width, channels = image.shape
    bpp = 2 * channels
    lines = np.ascontiguousarray(image, dtype=">u2").view(np.uint8).reshape(height, width * bpp).astype(int)
    raw = bytearray()
    for r, kind in enumerate(filters):
        raw.append(kind)
        for i in range(width * bpp):
            x = lines[r, i]
            a = lines[r, i - bpp] if i >= bpp else 0
            b = lines[r - 1, i] if r > 0 else 0
            c = lines[r - 1, i - bpp] if r > 0 and i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
            raw.append((x - pred) % 256)
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [3, 1])
def test_every_row_filter_decodes_exactly(channels):
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 65536, (11, 9, channels)).astype(np.uint16)
    image[4:7] = 32768 + np.arange(9)[None, :, None] * 64  # smooth rows, as a flow's are
    filters = [r % 5 for r in range(11)]  # none, sub, up, average, paeth, ...
    assert np.array_equal(decode_png16(spec_encode(image, filters)), image)
    # rows with filters 0-2 only take the row-at-a-time path
    assert np.array_equal(decode_png16(spec_encode(image, [r % 3 for r in range(11)])), image)


def test_reads_and_is_read_by_libpng(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the test extra) writes PNGs with libpng")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, (37, 53, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "cv.png"), image[..., ::-1].copy())
    assert np.array_equal(decode_png16((tmp_path / "cv.png").read_bytes()), image)
    (tmp_path / "ours.png").write_bytes(encode_png16(image))
    assert np.array_equal(cv2.imread(str(tmp_path / "ours.png"), cv2.IMREAD_UNCHANGED)[..., ::-1], image)


def test_what_it_refuses_says_what_the_file_holds(tmp_path):
    rng = np.random.default_rng(0)
    good = encode_png16(rng.integers(0, 65536, (4, 5, 3)).astype(np.uint16))
    with pytest.raises(Png16Error, match="x.png: not a PNG file"):
        decode_png16(b"P6\n", "x.png")
    with pytest.raises(Png16Error, match="truncated PNG"):
        decode_png16(good[:40], "x.png")
    eight_bit = good[:24] + bytes([8]) + good[25:]  # the IHDR's bit depth, CRC not checked
    with pytest.raises(Png16Error, match=r"a PNG of 8-bit samples \(colour type 2\), expected 16-bit ones"):
        decode_png16(eight_bit, "x.png")
    with pytest.raises(Png16Error, match="expected an HxWx3 uint16 array"):
        encode_png16(np.zeros((4, 5, 3), np.uint8))


def test_a_forged_header_is_refused_not_crashed_on_or_inflated_past_its_size():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    good = encode_png16(image)
    short_header = good[:8] + struct.pack(">I", 12) + good[12:16] + good[16:28] + good[33:]  # IHDR of 12 bytes
    with pytest.raises(Png16Error, match="x.png: corrupt PNG \\(an IHDR chunk of 12 bytes, expected 13\\)"):
        decode_png16(short_header, "x.png")
    huge = good[:16] + struct.pack(">II", 0xFFFFFFFF, 0xFFFFFFFF) + good[24:]  # would overflow the inflate limit
    with pytest.raises(Png16Error, match=r"x.png: corrupt PNG \(an image of 4294967295x4294967295 pixels\)"):
        decode_png16(huge, "x.png")
    no_rows = good[:20] + struct.pack(">I", 0) + good[24:]  # height 0
    with pytest.raises(Png16Error, match="x.png: corrupt PNG \\(an image of 0x5 pixels\\)"):
        decode_png16(no_rows, "x.png")
    # a header of 4 rows over the pixels of 100,000: only what 4 rows need (+1 byte) is inflated
    rows = np.zeros((100_000, 1 + 5 * 6), np.uint8)
    idat = zlib.compress(rows.tobytes())
    bomb = good[:33] + struct.pack(">I", len(idat)) + b"IDAT" + idat + b"\0\0\0\0" + good[-12:]
    with pytest.raises(Png16Error, match=r"x.png: over-long PNG \(125 bytes of pixels, expected 124\)"):
        decode_png16(bomb, "x.png")
    assert np.array_equal(decode_png16(good), image)
