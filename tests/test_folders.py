"""Flying Chairs folders: triplets found, sorted, incomplete ones reported or refused."""

from __future__ import annotations

import pytest

from flowcli.data.folders import find_samples
from flowcli.errors import DataError


def test_find_samples_sorted_and_complete(tmp_path, make_chairs_folder):
    samples, incomplete = find_samples(make_chairs_folder(tmp_path))
    assert [s.id for s in samples] == [f"{i:05d}" for i in range(1, 11)] and incomplete == []
    assert samples[0].img1 == tmp_path / "00001_img1.ppm" and samples[0].flow.name == "00001_flow.flo"


def test_incomplete_triplet_reported_and_strict_raises(tmp_path, make_chairs_folder):
    make_chairs_folder(tmp_path)
    (tmp_path / "00007_flow.flo").unlink()
    (tmp_path / "00003_img2.ppm").unlink()
    samples, incomplete = find_samples(tmp_path)
    assert len(samples) == 8
    assert incomplete == ["00003: missing 00003_img2.ppm", "00007: missing 00007_flow.flo"]
    with pytest.raises(DataError, match="00007: missing 00007_flow.flo"):
        find_samples(tmp_path, strict=True)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError) as info:
        find_samples(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no Flying Chairs pairs found (expected <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo)"
    )
    with pytest.raises(DataError, match="not a folder"):
        find_samples(tmp_path / "nowhere")
    (tmp_path / "00001_img1.ppm").write_bytes(b"")
    with pytest.raises(DataError, match="no complete Flying Chairs triplet.*00001: missing 00001_img2.ppm, 00001_flow.flo"):
        find_samples(tmp_path)


def test_hidden_files_are_no_pairs_and_suffixes_are_read_in_any_case(tmp_path, make_chairs_folder):
    make_chairs_folder(tmp_path, n=3)
    for name in ("00001_img1.ppm", "00001_img2.ppm", "00001_flow.flo"):  # what macOS leaves on foreign volumes
        (tmp_path / f"._{name}").write_bytes(b"\0\5\x16\x07 resource fork")
    (tmp_path / "00002_img1.ppm").rename(tmp_path / "00002_img1.PPM")
    (tmp_path / "00002_img2.ppm").rename(tmp_path / "00002_img2.PPM")
    (tmp_path / "00003_flow.flo").rename(tmp_path / "00003_flow.FLO")
    samples, incomplete = find_samples(tmp_path)
    assert [s.id for s in samples] == ["00001", "00002", "00003"] and incomplete == []
    assert samples[1].img1 == tmp_path / "00002_img1.PPM" and samples[1].img2 == tmp_path / "00002_img2.PPM"
    assert samples[2].flow == tmp_path / "00003_flow.FLO"
