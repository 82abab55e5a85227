"""flowcli.video: frames read one at a time and selected by index or time, damaged files named with
the frame index, the H.264 writer, and the one-line message when PyAV is missing."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest

from flowcli.errors import DataError, FlowcliError, ImageError, OutputError
from flowcli.video import Position, VideoWriter, parse_position, probe_video, read_frames, require_av

av = pytest.importorskip("av", reason="video tests need PyAV (the 'video' extra)")


def test_frames_come_back_exactly_as_written_and_as_imageio_decodes_them(tmp_path, make_video):
    import imageio.v3 as iio

    frames = make_video(tmp_path / "c.mkv", count=5)
    read = list(read_frames(tmp_path / "c.mkv"))
    assert [f.index for f in read] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([f.seconds for f in read], [0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)  # rate 10
    assert np.array_equal(np.stack([f.image for f in read]), frames)  # ffv1: lossless
    assert np.array_equal(iio.imread(tmp_path / "c.mkv", plugin="pyav"), frames)  # imageio's own PyAV path agrees
    info = probe_video(tmp_path / "c.mkv")
    assert (info.height, info.width, info.rate) == (64, 96, Fraction(10))
    assert info.frames == 5 and not info.exact  # Matroska states a duration, not a count


def test_avi_and_mp4_state_their_frame_count(tmp_path, make_video):
    make_video(tmp_path / "c.avi", count=4)
    make_video(tmp_path / "c.mp4", count=7, codec="libx264")
    assert (probe_video(tmp_path / "c.avi").frames, probe_video(tmp_path / "c.avi").exact) == (4, True)
    assert (probe_video(tmp_path / "c.mp4").frames, probe_video(tmp_path / "c.mp4").exact) == (7, True)
    assert len(list(read_frames(tmp_path / "c.mp4"))) == 7


@pytest.mark.parametrize("start, end, every, expected", [
    (None, None, 1, list(range(10))),
    (Position(frame=3), Position(frame=7), 1, [3, 4, 5, 6]),  # half-open, as a slice
    (Position(frame=1), None, 3, [1, 4, 7]),
    (Position(seconds=0.25), Position(seconds=0.6), 1, [3, 4, 5]),  # rate 10: frame t at t/10 s
    (Position(seconds=0.2), Position(frame=9), 2, [2, 4, 6, 8]),
])
def test_selection_by_index_and_by_time(tmp_path, make_video, start, end, every, expected):
    frames = make_video(tmp_path / "c.mkv", count=10)
    read = list(read_frames(tmp_path / "c.mkv", start=start, end=end, every=every))
    assert [f.index for f in read] == expected
    for f in read:
        assert np.array_equal(f.image, frames[f.index])


def test_parse_position():
    assert parse_position("12", "start") == Position(frame=12)
    assert parse_position(12, "start") == Position(frame=12)
    assert parse_position("2.5s", "start") == Position(seconds=2.5)
    assert str(Position(seconds=2.5)) == "2.5s" and str(Position(frame=3)) == "3"
    assert Position(seconds=0.25).as_frame(Fraction(10)) == 3 and Position(seconds=0.2).as_frame(Fraction(10)) == 2
    assert parse_position(None, "end") is None
    for bad in ("-1", "abc", "2.5m", ""):
        with pytest.raises(DataError, match=f"start={bad}: expected a whole frame index"):
            parse_position(bad, "start")


def test_a_truncated_video_stops_at_the_frame_it_cannot_decode(tmp_path, make_video):
    frames = make_video(tmp_path / "c.avi", count=10)
    data = (tmp_path / "c.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) * 6 // 10])
    read = []
    with pytest.raises(ImageError, match=r"cut.avi: frame (\d+) (cannot be decoded|is missing)") as caught:
        for frame in read_frames(tmp_path / "cut.avi"):
            read.append(frame)
    assert caught.value.args[0].split("frame ")[1].startswith(str(len(read)))  # the index of the first one lost
    assert 0 < len(read) < 10
    for frame in read:  # the frames before it are whole
        assert np.array_equal(frame.image, frames[frame.index])


def test_a_clip_shorter_than_its_header_says_is_reported(tmp_path, make_video):
    make_video(tmp_path / "c.mkv", count=30)
    data = (tmp_path / "c.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[:len(data) // 2])  # Matroska keeps the duration in its header
    with pytest.raises(ImageError, match=r"cut.mkv: frame 1\d is missing: the video stops after 1\d of the 30 frames"):
        list(read_frames(tmp_path / "cut.mkv"))


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 20)
    with pytest.raises(ImageError, match="junk.mp4: not a readable video"):
        probe_video(tmp_path / "junk.mp4")
    with pytest.raises(ImageError, match="no such file"):
        list(read_frames(tmp_path / "missing.mp4"))
    with pytest.raises(DataError, match="every=0: must be at least 1"):
        list(read_frames(tmp_path / "junk.mp4", every=0))


def test_an_animated_gif_is_read_frame_by_frame(tmp_path, make_video):
    frames = make_video(tmp_path / "c.gif", count=4, codec="gif")
    read = list(read_frames(tmp_path / "c.gif"))
    assert [f.index for f in read] == [0, 1, 2, 3]
    assert read[0].image.shape == frames[0].shape and read[0].image.dtype == np.uint8
    # a 256-colour palette: close to, not equal to, the frames written
    assert np.abs(read[2].image.astype(int) - frames[2]).mean() < 40


def test_writer_pads_odd_sides_to_even_and_keeps_the_frames(tmp_path, visible_files):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    with VideoWriter(tmp_path / "out.mp4", rate=Fraction(12)) as writer:
        for colour in colours:
            writer.write(np.broadcast_to(colour, (33, 47, 3)).copy())  # flat frames: H.264 keeps them closely
    assert visible_files(tmp_path) == {"out.mp4"}  # the temporary file renamed, nothing else
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert stream.average_rate == 12
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 5 and decoded[0].shape == (34, 48, 3)
    for image, colour in zip(decoded, colours):
        assert np.abs(image[:33, :47].astype(int) - colour).mean() < 4  # yuv420p rounding only
        assert image[33].mean() < 25  # the padding row is black (chroma is shared with the row above)


def test_writer_without_frames_leaves_nothing_and_refuses_other_suffixes(tmp_path, visible_files):
    VideoWriter(tmp_path / "empty.mkv").close()
    assert visible_files(tmp_path) == set()
    with pytest.raises(OutputError, match="must end in .mp4, .mov, .mkv"):
        VideoWriter(tmp_path / "out.webm")
    writer = VideoWriter(tmp_path / "out.mkv")
    writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ImageError, match="frame 1 is 16x16, the video's 32x32"):
        writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.close()
    assert visible_files(tmp_path) == {"out.mkv"}  # what was written is kept, and plays
    with av.open(str(tmp_path / "out.mkv")) as container:
        assert len(list(container.decode(video=0))) == 1


def test_missing_pyav_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(FlowcliError) as caught:
        require_av()
    assert str(caught.value) == "video files need PyAV, the 'video' extra: pip install -e \".[video]\""
    with pytest.raises(FlowcliError, match=r"\[video\]"):
        probe_video(tmp_path / "c.mp4")


def test_a_writer_that_cannot_open_its_container_leaves_no_temporary_file(tmp_path, monkeypatch):
    import flowcli.video as video

    def refuse(av, path, mode="r", **kwargs):
        raise ImageError(f"{path}: no muxer")

    monkeypatch.setattr(video, "_open", refuse)
    with pytest.raises(ImageError, match="no muxer"):
        VideoWriter(tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
