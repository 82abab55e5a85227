"""flowcli.io: exact .flo bytes, strict readers naming the file, atomic writers, image channel rules."""

from __future__ import annotations

import struct

import imageio.v3 as iio
import numpy as np
import pytest

from flowcli.errors import FlowFormatError, ImageError, OutputError
from flowcli.inference.predict import write_flow
from flowcli.io import (
    atomic_path,
    check_flow_array,
    read_flo,
    read_flow,
    read_image,
    read_image_pair,
    write_flo,
    write_image,
)
from flowcli.viz import flow_to_color


def expected_flo_bytes(values: list[list[tuple[float, float]]]) -> bytes:
    """Middlebury .flo built by hand: 'PIEH', int32 LE width, height, then float32 LE u, v row by row."""
    height, width = len(values), len(values[0])
    payload = b"".join(struct.pack("<ff", u, v) for row in values for u, v in row)
    return b"PIEH" + struct.pack("<ii", width, height) + payload


FLOW_VALUES = [  # 3 rows x 4 columns of (u, v); 0.1 and 1/3 check float32 rounding too
    [(0.0, 0.0), (1.5, -2.25), (0.1, 1 / 3), (-1000.0, 1e-7)],
    [(3.0, 4.0), (-0.5, 0.5), (7.75, -7.75), (12345.5, -0.0)],
    [(2.0, 1.0), (1.0, 2.0), (-3.0, -4.0), (65504.0, 1e9 / 2)],
]


def test_write_flo_bytes_are_exact_and_read_back_bit_exact(tmp_path):
    flow = np.array(FLOW_VALUES, dtype=np.float64)  # float64 in: the writer must convert to float32
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    data = path.read_bytes()
    assert data == expected_flo_bytes(FLOW_VALUES)
    assert len(data) == 12 + 3 * 4 * 2 * 4

    back = read_flo(path)
    assert back.shape == (3, 4, 2) and back.dtype == np.float32
    assert back.tobytes() == np.array(FLOW_VALUES, dtype="<f4").tobytes()
    assert back[0, 1, 1] == np.float32(-2.25) and back[1, 3, 0] == np.float32(12345.5)


def test_write_flow_with_flo_suffix_is_the_same_bytes(tmp_path):
    write_flow(tmp_path / "g.flo", np.array(FLOW_VALUES, np.float32))
    assert (tmp_path / "g.flo").read_bytes() == expected_flo_bytes(FLOW_VALUES)


def test_real_flying_chairs_pair_reads_with_its_documented_facts(shared_fixtures):
    path = shared_fixtures / "00001_flow.flo"
    raw = path.read_bytes()
    assert struct.unpack("<f", raw[:4])[0] == 202021.25
    assert struct.unpack("<ii", raw[4:12]) == (50, 50)

    flow = read_flo(path)
    assert flow.shape == (50, 50, 2) and flow.dtype == np.float32
    assert round(float(np.abs(flow).max()), 2) == 10.27
    assert float(np.linalg.norm(flow, axis=2).mean()) == pytest.approx(1.783, abs=5e-4)

    clean, valid = read_flow(path)
    assert valid.shape == (50, 50) and valid.all()
    assert np.array_equal(clean, flow)

    for name in ("00001_img1.ppm", "00001_img2.ppm"):
        image = read_image(shared_fixtures / name)
        assert image.shape == (50, 50, 3) and image.dtype == np.uint8
        assert image.std() > 1  # a real picture, not a blank


def _header(width: int, height: int) -> bytes:
    return b"PIEH" + struct.pack("<ii", width, height)


BAD_FLO = {  # sizes in messages are HEIGHTxWIDTH; the header stores width first
    "wrong magic": (b"PIEX" + struct.pack("<ii", 2, 2) + bytes(32), "not a .flo file (starts with b'PIEX'"),
    "short header": (b"PIEH" + struct.pack("<i", 2), "too short"),
    "empty": (b"", "too short"),
    "truncated": (_header(3, 2) + bytes(47), "truncated .flo (59 bytes, expected 60 for 2x3)"),
    "over-long": (_header(2, 2) + bytes(33), "over-long"),
    "negative width": (_header(-3, 2) + bytes(32), "implausible size 2x-3"),
    "zero height": (_header(2, 0), "implausible size 0x2"),
    "huge width": (_header(10**6, 2) + bytes(32), "implausible size 2x1000000"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLO))
def test_malformed_flo_raises_naming_the_file(tmp_path, case):
    payload, words = BAD_FLO[case]
    path = tmp_path / "bad.flo"
    path.write_bytes(payload)
    with pytest.raises(FlowFormatError) as info:
        read_flo(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)
    assert "np." not in str(info.value)  # no numpy reprs in messages
    with pytest.raises(FlowFormatError):
        read_flow(path)


def test_missing_flo_and_directory_raise_flow_format_error(tmp_path):
    missing = tmp_path / "nope.flo"
    with pytest.raises(FlowFormatError, match="no such file") as info:
        read_flo(missing)
    assert str(missing) in str(info.value)

    folder = tmp_path / "dir.flo"
    folder.mkdir()
    with pytest.raises(FlowFormatError, match="is a directory") as info:
        read_flo(folder)
    assert str(folder) in str(info.value)


def test_unknown_flow_is_masked_and_zeroed(tmp_path):
    flow = np.full((2, 3, 2), 1.5, np.float32)
    flow[0, 1] = (1e10, 0.5)  # u unknown
    flow[1, 2] = (2.0, -3e9)  # v unknown
    flow[1, 0] = (np.nan, 1.0)
    path = tmp_path / "unknown.flo"
    write_flo(path, flow)
    clean, valid = read_flow(path)
    assert valid.dtype == bool
    assert valid.tolist() == [[True, False, True], [False, True, False]]
    assert np.all(clean[~valid] == 0)
    assert np.all(clean[valid] == 1.5)
    assert read_flo(path)[0, 1, 0] == np.float32(1e10)  # the raw reader keeps the file's values


def test_write_into_missing_folder_raises_and_leaves_no_file(tmp_path):
    target = tmp_path / "missing" / "f.flo"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_flo(target, np.zeros((4, 4, 2), np.float32))
    with pytest.raises(FileNotFoundError):
        write_image(tmp_path / "missing" / "i.png", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_successful_writes_leave_no_temporary_files(tmp_path):
    write_flo(tmp_path / "f.flo", np.zeros((4, 5, 2), np.float32))
    write_image(tmp_path / "i.png", np.zeros((4, 5, 3), np.uint8))
    write_image(tmp_path / "i.ppm", np.zeros((4, 5, 3), np.uint8))
    write_flow(tmp_path / "c.png", np.ones((4, 5, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "f.flo", "i.png", "i.ppm"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.flo"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-written")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.flo"]


@pytest.mark.parametrize("where", ["mkstemp", "write", "rename"])
def test_a_failed_write_names_the_output_never_the_temporary_file(tmp_path, monkeypatch, where):
    import os
    import tempfile

    target = tmp_path / "out.flo"
    denied = lambda name, other=None: PermissionError(13, "Permission denied", str(name), None, other)
    if where == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: (_ for _ in ()).throw(denied(tmp_path / ".out.flo.x1")))
    elif where == "rename":
        monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(denied(a, str(b))))
    with pytest.raises(OutputError) as info:
        with atomic_path(target) as tmp:
            if where == "write":
                raise denied(tmp)
            tmp.write_bytes(b"data")
    assert str(info.value).startswith(f"{target}: cannot write")
    assert "Permission denied" in str(info.value) and ".out.flo." not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_flow_arrays_are_refused_with_their_shape(tmp_path):
    with pytest.raises(FlowFormatError, match=r"\(4, 5, 3\)"):
        check_flow_array(np.zeros((4, 5, 3)))
    with pytest.raises(FlowFormatError, match=r"\(4, 5\)"):
        write_flo(tmp_path / "x.flo", np.zeros((4, 5)))
    with pytest.raises(FlowFormatError, match="'.jpg'"):
        write_flow(tmp_path / "x.jpg", np.zeros((4, 5, 2)))
    assert list(tmp_path.iterdir()) == []


def test_ppm_written_by_hand_and_png_round_trip(tmp_path):
    image = (np.arange(4 * 5 * 3) * 7 % 256).astype(np.uint8).reshape(4, 5, 3)
    write_image(tmp_path / "a.ppm", image)
    assert (tmp_path / "a.ppm").read_bytes() == b"P6\n5 4\n255\n" + image.tobytes()
    assert np.array_equal(read_image(tmp_path / "a.ppm"), image)
    write_image(tmp_path / "a.png", image)
    assert np.array_equal(read_image(tmp_path / "a.png"), image)


def test_write_image_refuses_wrong_arrays_and_suffixes(tmp_path):
    with pytest.raises(ImageError, match=r"\(4, 5\) uint8"):
        write_image(tmp_path / "g.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ImageError, match="float32"):
        write_image(tmp_path / "f.png", np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ImageError, match="'.tif'"):
        write_image(tmp_path / "t.tif", np.zeros((4, 5, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_grayscale_png_expands_to_three_equal_channels(tmp_path):
    gray = (np.arange(6 * 7) * 5 % 256).astype(np.uint8).reshape(6, 7)
    iio.imwrite(tmp_path / "g.png", gray)
    image = read_image(tmp_path / "g.png")
    assert image.shape == (6, 7, 3) and image.dtype == np.uint8
    for channel in range(3):
        assert np.array_equal(image[..., channel], gray)


def test_sixteen_bit_png_keeps_the_high_byte(tmp_path):
    gray16 = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    iio.imwrite(tmp_path / "g16.png", gray16)
    image = read_image(tmp_path / "g16.png")
    assert image.dtype == np.uint8
    assert image[..., 0].tolist() == [[0, 0, 1, 255]]


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 128
    rgba[0, 0] = (200, 100, 50, 0)  # fully transparent: colour kept, alpha dropped, no blending
    iio.imwrite(tmp_path / "a.png", rgba)
    image = read_image(tmp_path / "a.png")
    assert image.shape == (3, 4, 3)
    assert np.array_equal(image, rgba[..., :3])


def test_cmyk_one_bit_and_grey_alpha_images_read_as_their_colours(tmp_path):
    from PIL import Image

    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "red.jpg")  # no cyan, full magenta + yellow
    Image.new("1", (4, 3), 1).save(tmp_path / "white.png")
    grey_alpha = Image.new("LA", (4, 3), (200, 0))  # transparent: the grey is kept, as RGBA's colour is
    grey_alpha.putpixel((0, 0), (7, 255))
    grey_alpha.save(tmp_path / "la.png")
    assert np.abs(read_image(tmp_path / "red.jpg").astype(int) - (255, 0, 0)).max() <= 2  # JPEG rounding
    assert np.array_equal(read_image(tmp_path / "white.png"), np.full((3, 4, 3), 255, np.uint8))
    expected = np.full((3, 4, 3), 200, np.uint8)
    expected[0, 0] = 7
    assert np.array_equal(read_image(tmp_path / "la.png"), expected)


def test_non_image_file_raises_image_error_naming_it(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="not a readable image") as info:
        read_image(fake)
    assert str(fake) in str(info.value)

    missing = tmp_path / "gone.ppm"
    with pytest.raises(ImageError, match="no such file") as info:
        read_image(missing)
    assert str(missing) in str(info.value)

    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)


def test_images_over_pillows_limit_are_refused_unless_large_and_pillow_never_warns(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    image = (np.arange(20 * 30 * 3) % 251).astype(np.uint8).reshape(20, 30, 3)
    write_image(tmp_path / "big.png", image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (DecompressionBombWarning included) fails the test
        for limit in (299, 599):  # Pillow alone: an error above twice its limit, a warning between
            monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
            with pytest.raises(ImageError) as info:
                read_image(tmp_path / "big.png")
            assert str(info.value) == (
                f"{tmp_path / 'big.png'}: a 20x30 image is over Pillow's limit of {limit:,} pixels "
                "(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs); "
                "predict with max_side=N reads a downsized copy")
            assert np.array_equal(read_image(tmp_path / "big.png", large=True), image)
            assert Image.MAX_IMAGE_PIXELS == limit  # lifted for that read only
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
        assert np.array_equal(read_image(tmp_path / "big.png"), image)  # at the limit: fine
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the user switched the check off
        assert np.array_equal(read_image(tmp_path / "big.png"), image)


def test_lifting_pillows_limit_for_some_reads_never_lifts_it_for_others(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    write_image(tmp_path / "big.png", np.zeros((20, 30, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)

    def read(large: bool) -> bool:
        try:
            return read_image(tmp_path / "big.png", large=large).shape == (20, 30, 3)
        except ImageError:
            return False

    kinds = [True, False] * 100
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, kinds)) == kinds  # every lifted read succeeds, every other one is refused
    assert Image.MAX_IMAGE_PIXELS == 100


def test_image_pair_of_different_sizes_is_refused(tmp_path):
    write_image(tmp_path / "a.ppm", np.zeros((4, 5, 3), np.uint8))
    write_image(tmp_path / "b.ppm", np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ImageError) as info:
        read_image_pair(tmp_path / "a.ppm", tmp_path / "b.ppm")
    message = str(info.value)
    assert f"{tmp_path / 'a.ppm'} is 4x5 but {tmp_path / 'b.ppm'} is 4x6" in message  # HEIGHTxWIDTH


def test_write_flow_png_is_the_colour_coding(tmp_path):
    flow = np.zeros((8, 10, 2), np.float32)
    flow[:, :5, 0] = 1.0  # left half moves right: red
    flow[:, 5:, 1] = -1.0  # right half moves up: blue/violet
    write_flow(tmp_path / "c.png", flow)
    image = read_image(tmp_path / "c.png")
    assert image.shape == (8, 10, 3)
    assert np.array_equal(image, flow_to_color(flow))
    assert image[0, 0].tolist() == [255, 0, 0]
    assert image[0, 9, 2] == 255 and image[0, 9, 1] == 0


def test_tiny_pair_fixture_is_a_shifted_structured_pair(tiny_pair):
    img1, img2 = read_image_pair(*tiny_pair)
    assert img1.shape == (64, 80, 3) and img1.dtype == np.uint8
    assert np.array_equal(img2, np.roll(img1, (2, 3), axis=(0, 1)))
    assert img1.std() > 20 and not np.array_equal(img1, img2)


def test_kitti_flow_png_decodes_under_the_devkit_formula_read_independently(tmp_path):
    """Written by flowcli, decoded by libpng (imageio's OpenCV plugin) and the devkit's
    u = (R - 2**15) / 64, v = (G - 2**15) / 64, valid = B: exact to the nearest 1/64 px."""
    cv2 = pytest.importorskip("cv2", reason="imageio reads 16-bit RGB PNGs through OpenCV (the test extra)")
    from flowcli.io import write_kitti_flow

    rng = np.random.default_rng(3)
    flow = rng.uniform(-300, 300, (21, 34, 2)).astype(np.float32)
    flow[0, 0] = (1e10, 0)  # unknown flow: written invalid
    valid = rng.random((21, 34)) > 0.3
    write_kitti_flow(tmp_path / "000000_10.png", flow, valid)
    raw = iio.imread(tmp_path / "000000_10.png", plugin="opencv", flags=cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (21, 34, 3)
    expected_valid = valid.copy()
    expected_valid[0, 0] = False
    assert np.array_equal(raw[..., 2] == 1, expected_valid) and raw[..., 2].max() == 1
    decoded = (raw[..., :2].astype(np.float64) - 2 ** 15) / 64.0
    assert np.abs(decoded - flow)[expected_valid].max() <= 1 / 128 + 1e-6  # nearest 1/64
    assert np.array_equal(decoded[expected_valid], np.round(flow.astype(np.float64) * 64)[expected_valid] / 64)
    assert (raw[~expected_valid] == 0).all()  # the devkit writes invalid pixels as zeros


def test_kitti_flow_round_trip_is_exact_on_the_1_64_grid_and_masks_invalid(tmp_path):
    from flowcli.io import read_kitti_flow, write_kitti_flow

    rng = np.random.default_rng(4)
    flow = (rng.integers(-64 * 500, 64 * 500, (9, 13, 2)) / 64).astype(np.float32)
    valid = rng.random((9, 13)) > 0.5
    write_kitti_flow(tmp_path / "f.png", flow, valid)
    back, back_valid = read_kitti_flow(tmp_path / "f.png")
    assert np.array_equal(back_valid, valid)
    assert np.array_equal(back[valid], flow[valid]) and (back[~valid] == 0).all()
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # written atomically, no temporary left


def test_kitti_flow_errors_name_the_file(tmp_path):
    from flowcli.io import read_kitti_flow

    with pytest.raises(FlowFormatError, match="no such file"):
        read_kitti_flow(tmp_path / "none.png")
    write_image(tmp_path / "eight.png", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(FlowFormatError, match=r"eight.png: a PNG of 8-bit samples .* \(a KITTI flow is a 16-bit RGB PNG\)"):
        read_kitti_flow(tmp_path / "eight.png")


def test_a_full_disk_during_a_write_names_the_output_and_leaves_nothing(tmp_path):
    import errno

    with pytest.raises(OutputError, match=r"x.flo: cannot write \(No space left on device\)"):
        with atomic_path(tmp_path / "x.flo"):
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name
    assert list(tmp_path.iterdir()) == []
