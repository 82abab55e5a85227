"""`flowcli predict VIDEO`: the same flows as the frames in a folder with --sequence, which frame
pairs --every/--start/--end select, the flow video (size, frame count, one colour scale), and every
bad input as one line, with the flows written before a damaged frame kept whole."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from flowcli.io import read_flo, read_image, write_image
from flowcli.viz import flow_to_color

av = pytest.importorskip("av", reason="video tests need PyAV (the 'video' extra)")


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def flows_in(folder) -> dict[str, np.ndarray]:
    return {p.name: read_flo(p) for p in sorted(folder.glob("*_flow.flo"))}


def test_a_video_gives_the_flows_of_its_frames_in_a_folder_with_sequence(run_cli, make_video, tmp_path):
    frames = make_video(tmp_path / "clip.mkv", count=5, size=(64, 96))
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(decode(tmp_path / "clip.mkv")):  # the decoded frames (ffv1: the same as written)
        assert np.array_equal(frame, frames[index])
        write_image(folder / f"{index:06d}.png", frame)
    result = run_cli("predict", folder, "--sequence", "-o", tmp_path / "from_frames", "--weights", "random")
    assert result.exit_code == 0, result.output
    result = run_cli("predict", tmp_path / "clip.mkv", "-o", tmp_path / "from_video", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote 4 flows to {tmp_path / 'from_video'} (64x96, frames 0 to 4) in ")
    assert "frames/s end to end" in result.stdout
    expected, got = flows_in(tmp_path / "from_frames"), flows_in(tmp_path / "from_video")
    assert list(got) == [f"{i:06d}_flow.flo" for i in range(4)] == list(expected)
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)


def test_max_side_shrinks_each_frame_as_the_folder_mode_does(run_cli, make_video, tmp_path):
    frames = make_video(tmp_path / "clip.avi", count=3, size=(64, 160))
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(frames):
        write_image(folder / f"{index:06d}.png", frame)
    for source, out in ((folder, "a"), (tmp_path / "clip.avi", "b")):
        args = ("--sequence",) if source == folder else ()
        result = run_cli("predict", source, *args, "-o", tmp_path / out, "--weights", "random", "--max-side", "128")
        assert result.exit_code == 0, result.output
    a, b = flows_in(tmp_path / "a"), flows_in(tmp_path / "b")
    assert list(a) == list(b) and b["000000_flow.flo"].shape == (64, 160, 2)  # back at the input's size
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5)


@pytest.fixture(scope="module")
def predictor():
    from flowcli.inference.engine import load_predictor

    return load_predictor("random")


@pytest.mark.parametrize("options, names", [
    ({}, [0, 1, 2, 3, 4, 5, 6, 7, 8]),
    ({"every": 3}, [0, 3, 6]),  # 0->3, 3->6, 6->9
    ({"start": 2, "end": 6}, [2, 3, 4]),  # frames 2..5: 2->3, 3->4, 4->5
    ({"start": "0.4s", "every": 2}, [4, 6]),  # rate 10: frame 4 at 0.4 s; 4->6, 6->8
    ({"start": "1", "end": "0.8s", "every": 2}, [1, 3, 5]),  # frames 1, 3, 5, 7
])
def test_every_start_and_end_select_the_frame_pairs(make_video, tmp_path, predictor, options, names):
    from flowcli.inference.video import predict_video

    make_video(tmp_path / "clip.mkv", count=10, shifts=[1, 2, 3, 1, 2, 3, 1, 2, 3, 1])
    frames = decode(tmp_path / "clip.mkv")
    result = predict_video(tmp_path / "clip.mkv", tmp_path / "flows", predictor=predictor, **options)
    got = flows_in(tmp_path / "flows")
    assert list(got) == [f"{i:06d}_flow.flo" for i in names]
    step = names[1] - names[0]
    assert (result.first_frame, result.every, result.flows, result.frames) == (names[0], step, len(names), len(names) + 1)
    for index in names:  # the pair is (index, index + step), as decoded
        expected = predictor.predict_numpy(frames[index], frames[index + step])
        np.testing.assert_allclose(got[f"{index:06d}_flow.flo"], expected, atol=1e-5)


def test_start_end_and_every_reach_the_command(run_cli, make_video, tmp_path):
    make_video(tmp_path / "clip.mkv", count=10)
    result = run_cli("predict", tmp_path / "clip.mkv", "-o", tmp_path / "flows", "--weights", "random",
                     "--start", "0.3s", "--end", "8", "--every", "2")
    assert result.exit_code == 0, result.output
    assert "wrote 2 flows to" in result.stdout and "(64x96, frames 3 to 7)" in result.stdout
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == ["000003_flow.flo", "000005_flow.flo"]


def test_progress_knows_the_count_when_the_container_states_it(make_video, tmp_path, predictor):
    from flowcli.inference.video import predict_video

    make_video(tmp_path / "clip.avi", count=7)
    calls = []
    result = predict_video(tmp_path / "clip.avi", tmp_path / "flows", predictor=predictor, every=2,
                           on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # frames 0, 2, 4, 6
    assert (result.frames, result.flows, result.first_frame, result.every) == (4, 3, 0, 2)
    assert result.max_flow is None and not result.to_video
    assert result.frames_per_s == pytest.approx(result.flows / result.seconds)


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    """A clip whose steps move by 1 to 6 px (so the flows' maxima differ) and its flows from the
    shipped weights, as .flo files: the reference for the colour tests."""
    pytest.importorskip("av")
    from typer.testing import CliRunner

    from flowcli.cli import app

    from conftest import structured_image

    folder = tmp_path_factory.mktemp("moving")
    base = structured_image(64, 160, seed=3)
    offsets = np.cumsum([0, 1, 6, 2, 5, 3])
    with av.open(str(folder / "clip.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "bgr0"
        for offset in offsets:
            frame = np.ascontiguousarray(np.roll(base, int(offset), axis=1)[:, :96])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    result = CliRunner().invoke(app, ["predict", str(folder / "clip.mkv"), "-o", str(folder / "flows")])
    assert result.exit_code == 0, result.output
    return folder, [read_flo(p) for p in sorted((folder / "flows").glob("*.flo"))]


def test_flow_video_has_one_colour_scale_for_the_whole_clip(run_cli, moving_clip, tmp_path):
    folder, flows = moving_clip
    maxima = [np.hypot(f[..., 0], f[..., 1]).max() for f in flows]
    assert max(maxima) > 2 * min(maxima)  # a per-frame scale would colour these very differently
    scale = np.percentile(np.concatenate([np.hypot(f[..., 0], f[..., 1]).ravel() for f in flows]), 99)
    result = run_cli("predict", folder / "clip.mkv", "-o", tmp_path / "flow.mp4")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"colour scale {scale:.2f} px (99th percentile of |flow| over the "
                                          "first 5 flows)")
    video = decode(tmp_path / "flow.mp4")
    assert len(video) == len(flows) == 5 and video[0].shape == (64, 96, 3)
    for image, flow, top in zip(video, flows, maxima):
        constant = np.abs(image.astype(int) - flow_to_color(flow, max_flow=scale)).mean()
        own = np.abs(image.astype(int) - flow_to_color(flow)).mean()  # what a per-frame scale gives
        assert constant < 4, constant  # H.264 (crf 18, yuv420p) rounding only
        if abs(top - scale) > 0.3 * scale:
            assert own > 2 * constant + 3, (own, constant)

    result = run_cli("predict", folder / "clip.mkv", "-o", tmp_path / "given.mkv", "--max-flow", "4",
                     "--side-by-side", "--every", "2")
    assert result.exit_code == 0, result.output
    assert "colour scale 4.00 px (--max-flow 4)" in result.stdout
    video = decode(tmp_path / "given.mkv")
    frames = decode(folder / "clip.mkv")
    assert len(video) == 2 and video[0].shape == (64, 192, 3)  # frames 0->2, 2->4; frame | flow
    for image, index in zip(video, (0, 2)):
        assert np.abs(image[:, :96].astype(int) - frames[index]).mean() < 6  # the input frame on the left
    with av.open(str(tmp_path / "given.mkv")) as container:
        assert container.streams.video[0].average_rate == 5  # 10 frames/s, every second frame


def test_png_flows_from_a_video_share_the_scale_too(run_cli, moving_clip, tmp_path):
    folder, flows = moving_clip
    result = run_cli("predict", folder / "clip.mkv", "-o", tmp_path / "pngs", "--format", "png", "--max-flow", "3")
    assert result.exit_code == 0, result.output
    for index, flow in enumerate(flows):
        assert np.array_equal(read_image(tmp_path / "pngs" / f"{index:06d}_flow.png"), flow_to_color(flow, max_flow=3))


def test_a_truncated_video_keeps_the_flows_before_the_damaged_frame(run_cli, make_video, tmp_path, assert_clean_failure, visible_files):
    make_video(tmp_path / "clip.avi", count=12)
    result = run_cli("predict", tmp_path / "clip.avi", "-o", tmp_path / "whole", "--weights", "random")
    assert result.exit_code == 0, result.output
    whole = flows_in(tmp_path / "whole")
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])
    before = visible_files(tmp_path) | {"flows"}
    result = run_cli("predict", tmp_path / "cut.avi", "-o", tmp_path / "flows", "--weights", "random")
    assert_clean_failure(result, "cut.avi: frame ", "flows before it are in", before=before, folder=tmp_path)
    lost = int(result.stderr.split("frame ")[1].split()[0])
    kept = flows_in(tmp_path / "flows")
    assert len(kept) == lost - 1 and lost > 2  # every pair before the damaged frame
    assert f"the {lost - 1} flows before it" in result.stderr
    assert visible_files(tmp_path / "flows") == set(kept)  # no temporary file
    for name, flow in kept.items():
        np.testing.assert_array_equal(flow, whole[name])

    result = run_cli("predict", tmp_path / "cut.avi", "-o", tmp_path / "flow.mp4", "--weights", "random")
    assert_clean_failure(result, "cut.avi: frame ", before=before | {"flow.mp4"}, folder=tmp_path)
    assert len(decode(tmp_path / "flow.mp4")) == lost - 1  # closed cleanly: what was written plays


def _video_case(case: str, tmp_path, make_video, make_pair):
    clip = tmp_path / "clip.avi"
    make_video(clip, count=6)
    if case == "every 0":
        return [clip, "-o", tmp_path / "flows", "--every", "0"], ["--every 0: must be at least 1"]
    if case == "start after end":
        return [clip, "-o", tmp_path / "flows", "--start", "4", "--end", "2"], ["--start 4: is not before --end 2"]
    if case == "start after end in seconds":
        return [clip, "-o", tmp_path / "flows", "--start", "0.5s", "--end", "3"], ["--start 0.5s: is not before --end 3"]
    if case == "start beyond the clip":
        return [clip, "-o", tmp_path / "flows", "--start", "6"], ["--start 6: beyond the video's 6 frames (0 to 5)"]
    if case == "start beyond an mkv":  # no frame count in the header: found out by reading
        make_video(tmp_path / "clip.mkv", count=3)
        return [tmp_path / "clip.mkv", "-o", tmp_path / "flows", "--start", "9"], ["select 0 frames; a flow needs 2"]
    if case == "selection of one frame":
        return [clip, "-o", tmp_path / "flows", "--every", "6"], ["--every 6 select 1 of its 6 frames; a flow needs 2"]
    if case == "one-frame video":
        make_video(tmp_path / "one.avi", count=1)
        return [tmp_path / "one.avi", "-o", tmp_path / "flows"], ["one.avi: has 1 frame; a flow needs 2"]
    if case == "unreadable video":
        (tmp_path / "junk.mp4").write_bytes(b"no video here" * 50)
        return [tmp_path / "junk.mp4", "-o", tmp_path / "flows"], ["junk.mp4: not a readable video"]
    if case == "missing video":
        return [tmp_path / "nothing.mp4", "-o", tmp_path / "flows"], ["nothing.mp4: no such file"]
    if case == "flows already there":
        (tmp_path / "flows").mkdir()
        (tmp_path / "flows" / "000003_flow.flo").write_bytes(b"the user's")
        return [clip, "-o", tmp_path / "flows"], ["already holds 1 flow of a video (000003_flow.flo)", "--overwrite"]
    if case == "flo output":
        return [clip, "-o", tmp_path / "flow.flo"], ["flow.flo: a video's flows go to a folder or into a video"]
    if case == "side by side into a folder":
        return [clip, "-o", tmp_path / "flows", "--side-by-side"], ["--side-by-side: needs a video output"]
    if case == "second input":
        return [clip, clip, "-o", tmp_path / "flows"], ["is a video, which takes no second input"]
    if case == "video option for a pair":
        a, b = make_pair()
        return [a, b, "-o", tmp_path / "f.flo", "--every", "2"], ["--every: applies to a video input"]
    if case == "bad position":
        return [clip, "-o", tmp_path / "flows", "--start", "2x"], ["--start 2x: expected a whole frame index (12) or seconds ending in s (2.5s)"]
    if case == "bad max flow":
        return [clip, "-o", tmp_path / "f.mp4", "--max-flow", "0"], ["--max-flow 0: must be a positive number"]
    if case == "format of a flow video":  # it would be ignored
        return [clip, "-o", tmp_path / "f.mp4", "--format", "png"], ["--format png: applies to a folder of flows, not to a video output (f.mp4)"]
    if case == "fb-check":
        return [clip, "-o", tmp_path / "flows", "--mask-invalid"], ["--fb-check", "not available for a video", "--sequence"]
    raise AssertionError(case)


VIDEO_CASES = ["every 0", "start after end", "start after end in seconds", "start beyond the clip",
               "start beyond an mkv", "selection of one frame", "one-frame video", "unreadable video",
               "missing video", "flows already there", "flo output", "side by side into a folder", "second input",
               "video option for a pair", "bad position", "bad max flow", "format of a flow video", "fb-check"]


@pytest.mark.parametrize("case", VIDEO_CASES)
def test_bad_video_input_fails_cleanly(run_cli, make_video, make_pair, tmp_path, case, assert_clean_failure, visible_files):
    args, words = _video_case(case, tmp_path, make_video, make_pair)
    before = visible_files(tmp_path)
    result = run_cli("predict", *args, "--weights", "random")
    assert_clean_failure(result, *words, before=before, folder=tmp_path)
    if case == "flows already there":
        assert (tmp_path / "flows" / "000003_flow.flo").read_bytes() == b"the user's"


def test_missing_pyav_names_the_extra(run_cli, make_video, tmp_path, monkeypatch, assert_clean_failure, visible_files):
    make_video(tmp_path / "clip.mp4", count=3, codec="libx264")
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    before = visible_files(tmp_path)
    result = run_cli("predict", tmp_path / "clip.mp4", "-o", tmp_path / "flows", "--weights", "random")
    assert_clean_failure(result, "video files need PyAV", 'pip install -e ".[video]"', before=before, folder=tmp_path)


def test_a_frame_dropped_in_the_middle_stops_the_run_instead_of_shifting_the_names(run_cli, tmp_path, assert_clean_failure, visible_files):
    # MJPEG with bytes zeroed mid-file: FFmpeg drops the damaged frame without an error, so every
    # later frame would take the index before it; the timestamps show the gap
    av = pytest.importorskip("av", reason="video tests need PyAV (the 'video' extra)")
    clip = tmp_path / "damaged.mkv"
    container = av.open(str(clip), "w")
    stream = container.add_stream("mjpeg", rate=10)
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuvj420p"
    scene = (np.random.default_rng(0).random((64, 200, 3)) * 255).astype(np.uint8)
    for i in range(20):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, 2 * i:2 * i + 96]), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    data = bytearray(clip.read_bytes())
    data[len(data) // 2:len(data) // 2 + 1500] = bytes(1500)
    clip.write_bytes(bytes(data))
    decoded = sum(1 for _ in av.open(str(clip)).decode(video=0))
    assert decoded == 19  # one frame silently dropped: the case under test
    before = visible_files(tmp_path)
    result = run_cli("predict", clip, "-o", tmp_path / "flows", "--weights", "random")
    lost = int(result.stderr.split("frame ")[1].split(" ")[0])  # the first index the decoder skipped
    kept = sorted(p.name for p in (tmp_path / "flows").iterdir())
    assert kept == [f"{i:06d}_flow.flo" for i in range(lost - 1)]  # every flow before it, none after
    assert_clean_failure(result, f"frame {lost} cannot be decoded", "skipped", f"the {lost - 1} flows before it",
                         before=before | {"flows"}, folder=tmp_path)


def test_a_shrunk_flow_video_shows_the_flows_a_folder_gets(run_cli, moving_clip, tmp_path):
    # with --max-side the video's pictures are coloured at the network's size and enlarged: they
    # must still show the flows (in frame pixels) that the .flo files of the same run hold
    folder, _ = moving_clip
    common = [folder / "clip.mkv", "--max-side", "64", "--max-flow", "6"]
    assert run_cli("predict", *common[:1], "-o", tmp_path / "flows", *common[1:-2]).exit_code == 0
    result = run_cli("predict", *common[:1], "-o", tmp_path / "flow.mp4", *common[1:])
    assert result.exit_code == 0, result.output
    flows = [read_flo(p) for p in sorted((tmp_path / "flows").glob("*.flo"))]
    video = decode(tmp_path / "flow.mp4")
    assert len(video) == len(flows) == 5 and video[0].shape == flows[0].shape[:2] + (3,) == (64, 96, 3)
    for image, flow in zip(video, flows):
        expected = flow_to_color(flow, max_flow=6).astype(int)
        assert np.abs(image.astype(int) - expected).mean() < 6  # H.264 and the enlarging only
        assert np.abs(image.astype(int) - flow_to_color(0.5 * flow, max_flow=6)).mean() > 6  # units matter



def test_a_failed_video_stops_its_decoding_thread_even_while_the_error_is_kept(make_video, tmp_path, predictor):
    import threading

    from flowcli.errors import OutOfMemoryError
    from flowcli.inference.video import predict_video

    class RunsOutOfMemory:  # fails in the consumer, while the thread still has frames to decode
        def __getattr__(self, name):
            return getattr(predictor, name)

        def predict_uint8(self, *_):
            raise OutOfMemoryError("input 64x96 does not fit in memory at batch 1; try smaller frames")

    make_video(tmp_path / "clip.avi", count=40)
    with pytest.raises(OutOfMemoryError) as kept:  # the caller holds the traceback, and with it the frames
        predict_video(tmp_path / "clip.avi", tmp_path / "flows", predictor=RunsOutOfMemory())
    assert kept.value is not None
    assert not [t for t in threading.enumerate() if t.name == "flowcli-video"]
