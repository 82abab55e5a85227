"""`flowcli predict`: outputs checked against the Python API, and every bad input as one error line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowcli.io import read_flo, read_image, write_image
from flowcli.viz import flow_to_color



@pytest.fixture(scope="module")
def reference_flow():
    """`reference_flow(a, b, **kwargs)`: the API's flow for the pair from arrays (not through the CLI's
    file handling), with the same seeded random weights, loaded once."""
    from flowcli.inference.engine import load_predictor
    from flowcli.inference.predict import estimate_flow

    predictor = load_predictor("random")
    return lambda a, b, **kwargs: estimate_flow(read_image(a), read_image(b), predictor=predictor, **kwargs)


# -- outputs ------------------------------------------------------------------------------------------

def test_predict_with_random_weights_writes_flo_and_png(run_cli, make_pair, tmp_path, reference_flow, visible_files):
    a, b = make_pair(128, 160, shift=(3, -2))
    (tmp_path / "out.png").write_bytes(b"an older file")  # replaced only with --overwrite
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random")
    assert result.exit_code == 0, result.output
    flow = read_flo(tmp_path / "out.flo")
    assert flow.shape == (128, 160, 2) and np.isfinite(flow).all()
    np.testing.assert_allclose(flow, reference_flow(a, b), atol=1e-5)
    magnitude = np.linalg.norm(flow, axis=2)
    assert result.stdout.strip() == (f"wrote {tmp_path / 'out.flo'} (128x160, mean |flow| {magnitude.mean():.2f} px, "
                                      f"max {magnitude.max():.2f} px)")  # HEIGHTxWIDTH, plain numbers

    result = run_cli("predict", a, b, "-o", tmp_path / "out.png", "--weights", "random")
    assert result.exit_code == 1 and result.stderr == (f"error: {tmp_path / 'out.png'}: already exists "
                                                       "(pass --overwrite to replace it)\n")
    assert (tmp_path / "out.png").read_bytes() == b"an older file"
    result = run_cli("predict", a, b, "-o", tmp_path / "out.png", "--weights", "random", "--overwrite")
    assert result.exit_code == 0, result.output
    image = read_image(tmp_path / "out.png")
    assert image.shape == (128, 160, 3)
    assert np.array_equal(image, flow_to_color(flow))  # same seeded model, same flow, same colours
    assert visible_files(tmp_path) == {a.name, b.name, "out.flo", "out.png"}


def test_predict_folder_of_pairs_and_of_video_frames(run_cli, make_pair, tmp_path, reference_flow, visible_files):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    a, b = make_pair(64, 80, folder=pairs, name="x")
    make_pair(64, 80, seed=1, folder=pairs, name="y")
    result = run_cli("predict", pairs, "-o", tmp_path / "pair_flows", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote 2 flows to {tmp_path / 'pair_flows'} in ")
    assert result.stdout.strip().endswith(" pairs/s end to end)")
    assert visible_files(tmp_path / "pair_flows") == {"x_flow.flo", "y_flow.flo"}
    np.testing.assert_allclose(read_flo(tmp_path / "pair_flows" / "x_flow.flo"), reference_flow(a, b), atol=1e-5)

    video = tmp_path / "video"
    video.mkdir()
    rng = np.random.default_rng(0)
    for name in ("frame1", "frame2", "frame10", "frame2_flow"):  # name order would put frame10 before frame2;
        write_image(video / f"{name}.png", rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))  # *_flow: an output
    result = run_cli("predict", video, "--sequence", "-o", tmp_path / "video_flows", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert "wrote 2 flows" in result.stdout
    assert visible_files(tmp_path / "video_flows") == {"frame1_flow.flo", "frame2_flow.flo"}
    np.testing.assert_allclose(read_flo(tmp_path / "video_flows" / "frame2_flow.flo"),
                               reference_flow(video / "frame2.png", video / "frame10.png"), atol=1e-5)


def test_predict_folder_keeps_existing_flows_unless_overwrite(run_cli, make_pair, tmp_path, reference_flow, assert_clean_failure):
    pairs, flows = tmp_path / "pairs", tmp_path / "flows"
    pairs.mkdir()
    flows.mkdir()
    a, b = make_pair(64, 80, folder=pairs, name="x")
    (flows / "x_flow.flo").write_bytes(b"the user's file")
    result = run_cli("predict", pairs, "-o", flows, "--weights", "random")
    assert_clean_failure(result, "flows", "1 of the 1 flows already exist", "x_flow.flo", "--overwrite",
                         before={"pairs", "flows"}, folder=tmp_path)
    assert (flows / "x_flow.flo").read_bytes() == b"the user's file"

    result = run_cli("predict", pairs, "-o", flows, "--weights", "random", "--overwrite")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote 1 flow to {flows} in ")  # singular
    np.testing.assert_allclose(read_flo(flows / "x_flow.flo"), reference_flow(a, b), atol=1e-5)


def test_predict_folder_applies_max_side_and_warns_once_when_it_shrinks_below_128_px(run_cli, make_pair, tmp_path, reference_flow):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    a, b = make_pair(64, 128, folder=pairs, name="x")
    make_pair(64, 128, seed=1, folder=pairs, name="y")
    result = run_cli("predict", pairs, "-o", tmp_path / "flows", "--weights", "random", "--max-side", "64")
    assert result.exit_code == 0, result.output
    flow = read_flo(tmp_path / "flows" / "x_flow.flo")
    assert flow.shape == (64, 128, 2)  # back at the input's size
    np.testing.assert_allclose(flow, reference_flow(a, b, max_side=64), atol=1e-5)
    assert np.abs(flow - reference_flow(a, b)).max() > 1e-3  # --max-side did change what the network saw
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --max-side 64: the network sees 64x64 frames, and under 128 px its flow can "
                        "be worse than zero flow (--max-side 128 keeps the full size)"]


def test_predict_pair_warns_when_max_side_leaves_the_network_under_128_px(run_cli, make_pair, tmp_path, reference_flow):
    a, b = make_pair(96, 192)
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random", "--max-side", "100")
    assert result.exit_code == 0, result.output
    # 96x192 shrunk to a longer side of 100: 50x100, raised to the network's 64 px minimum
    assert result.stderr.strip() == ("warning: --max-side 100: the network sees 64x100 frames, and under 128 px its "
                                     "flow can be worse than zero flow (--max-side 192 keeps the full size)")
    np.testing.assert_allclose(read_flo(tmp_path / "out.flo"), reference_flow(a, b, max_side=100), atol=1e-5)


def test_an_image_over_pillows_limit_is_refused_but_read_with_max_side(run_cli, make_pair, tmp_path, monkeypatch, reference_flow, assert_clean_failure, visible_files):
    import warnings

    from PIL import Image

    a, b = make_pair(64, 80)
    expected = reference_flow(a, b, max_side=64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 80 // 2 + 1)  # Pillow alone would only warn (< 2x)
    before = visible_files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random")
        assert_clean_failure(result, str(a), "64x80 image is over Pillow's limit of 2,561 pixels",
                             "PIL.Image.MAX_IMAGE_PIXELS", "--max-side N", before=before, folder=tmp_path)
        result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random", "--max-side", "64")
    assert result.exit_code == 0, result.output
    assert [w for w in caught if "PIL" in w.filename or "Decompression" in str(w.category)] == []
    assert "Decompression" not in result.output
    np.testing.assert_allclose(read_flo(tmp_path / "out.flo"), expected, atol=1e-5)


def test_an_unwritable_output_folder_is_refused_before_any_work(run_cli, make_pair, tmp_path, monkeypatch, assert_clean_failure, visible_files):
    import os

    import flowcli.inference.predict

    a, b = make_pair(64, 80)
    (tmp_path / "pairs").mkdir()
    make_pair(64, 80, folder=tmp_path / "pairs", name="x")
    (tmp_path / "flows").mkdir()
    readable = os.access
    # every folder read-only, as root would not see a chmod
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if mode & os.W_OK else readable(path, mode, **kw))
    monkeypatch.setattr(flowcli.inference.predict, "load_predictor", lambda *a, **k: pytest.fail("model loaded"))
    before = visible_files(tmp_path)
    for args, words in (([a, b, "-o", tmp_path / "out.flo"], ["out.flo", "is not writable"]),
                        ([tmp_path / "pairs", "-o", tmp_path / "flows"], ["flows", "is not writable"]),
                        ([tmp_path / "pairs", "-o", tmp_path / "new"], ["new", "is not writable"])):
        result = run_cli("predict", *args, "--weights", "random")
        assert_clean_failure(result, *words, before=before, folder=tmp_path)
    assert os.listdir(tmp_path / "flows") == []


# -- bad input: exit 1, one line on stderr, no output -------------------------------------------------

def _predict_case(case: str, tmp_path: Path, make_pair) -> tuple[list, list[str]]:
    """(arguments, words the error line must contain) for one bad predict invocation."""
    a, b = make_pair(64, 80)
    out = tmp_path / "out.flo"
    if case == "missing file":
        return ["predict", a, tmp_path / "missing.ppm", "-o", out], ["missing.ppm", "no such file"]
    if case == "directory as image":
        (tmp_path / "frames").mkdir()
        return ["predict", a, tmp_path / "frames", "-o", out], ["frames", "is a directory"]
    if case == "not an image":
        (tmp_path / "notes.ppm").write_text("hello\n")
        return ["predict", tmp_path / "notes.ppm", b, "-o", out], ["notes.ppm", "not a readable image"]
    if case == "different sizes":
        c, _ = make_pair(64, 96, name="c")
        return ["predict", a, c, "-o", out], ["is 64x80", "is 64x96", "same size"]
    if case == "output folder missing":
        return ["predict", a, b, "-o", tmp_path / "nowhere" / "out.flo"], ["nowhere", "does not exist"]
    if case == "output is a folder":
        (tmp_path / "out.flo").mkdir()
        return ["predict", a, b, "-o", tmp_path / "out.flo"], ["out.flo", "is a folder"]
    if case == "output suffix":
        return ["predict", a, b, "-o", tmp_path / "out.txt"], ["out.txt", ".flo or .png"]
    if case == "no second image":
        return ["predict", a, "-o", out], ["give a second image"]
    if case == "max side below 64":
        return ["predict", a, b, "-o", out, "--max-side", "32"], ["--max-side 32", "at least 64"]
    (tmp_path / "pairs").mkdir()
    make_pair(64, 80, folder=tmp_path / "pairs", name="x")
    if case == "second input after a folder":
        return ["predict", tmp_path / "pairs", a, "-o", tmp_path / "flows"], [str(a), "takes no second input"]
    if case == "folder with max side below 64":
        return ["predict", tmp_path / "pairs", "-o", tmp_path / "flows", "--max-side", "10"], ["--max-side 10"]
    if case == "unknown format":
        return ["predict", tmp_path / "pairs", "-o", tmp_path / "flows", "--format", "tif"], \
            ["--format tif", "choose flo or png"]
    if case == "folder output is a file":
        (tmp_path / "flows").write_text("not a folder")
        return ["predict", tmp_path / "pairs", "-o", tmp_path / "flows"], ["flows", "is a file"]
    if case == "folder output's parent missing":
        return ["predict", tmp_path / "pairs", "-o", tmp_path / "no" / "flows"], ["no", "does not exist"]
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        return ["predict", tmp_path / "empty", "-o", tmp_path / "flows"], ["empty", "no <id>_img1"]
    if case == "frames without --sequence":
        (tmp_path / "video").mkdir()
        for n in (1, 2):
            (tmp_path / "video" / f"frame{n}.ppm").write_bytes(a.read_bytes())
        return ["predict", tmp_path / "video", "-o", tmp_path / "flows"], ["video", "add --sequence"]
    if case == "one frame":
        (tmp_path / "video").mkdir()
        (tmp_path / "video" / "frame1.ppm").write_bytes(a.read_bytes())
        return ["predict", tmp_path / "video", "--sequence", "-o", tmp_path / "flows"], ["at least 2 images, found 1"]
    if case == "--sequence of two files":
        return ["predict", a, b, "--sequence", "-o", out], ["--sequence needs a folder"]
    if case == "--format for one pair":  # it would be ignored: the suffix decides
        return ["predict", a, b, "--format", "png", "-o", out], ["--format png", "its output's suffix (out.flo)"]
    raise AssertionError(case)


PREDICT_CASES = ["missing file", "directory as image", "not an image", "different sizes",
                 "output folder missing", "output is a folder", "output suffix", "no second image",
                 "max side below 64", "second input after a folder", "folder with max side below 64",
                 "unknown format", "folder output is a file", "folder output's parent missing",
                 "empty folder", "frames without --sequence", "one frame", "--sequence of two files",
                 "--format for one pair"]


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_bad_input_fails_cleanly(run_cli, make_pair, tmp_path, case, assert_clean_failure, visible_files):
    args, words = _predict_case(case, tmp_path, make_pair)
    before = visible_files(tmp_path)
    result = run_cli(*args, "--weights", "random")
    assert_clean_failure(result, *words, before=before, folder=tmp_path)


def test_predict_verbose_lists_the_pipeline_before_writing(run_cli, tiny_pair, tmp_path):
    from flowcli.inference.options import InferenceOptions
    from flowcli.inference.pipeline import describe_pipeline

    result = run_cli("predict", *tiny_pair, "-o", tmp_path / "v.flo", "--weights", "random", "--passes", "2",
                     "--verbose")
    assert result.exit_code == 0, result.output
    steps = [f"{n}. {line}" for n, line in enumerate(describe_pipeline(InferenceOptions(passes=2)), 1)]
    assert result.stderr.splitlines()[:len(steps)] == steps
    assert (tmp_path / "v.flo").is_file()


def test_out_of_memory_names_the_option_that_shrinks_the_frames(run_cli, tiny_pair, tmp_path, monkeypatch,
                                                                 assert_clean_failure, visible_files):
    from flowcli.inference.engine import Predictor

    def too_big(self, img1, img2):
        raise self._does_not_fit(img1.shape[0], *img1.shape[-2:])

    monkeypatch.setattr(Predictor, "__call__", too_big)
    before = visible_files(tmp_path)
    result = run_cli("predict", *tiny_pair, "-o", tmp_path / "out.flo", "--weights", "random")
    assert_clean_failure(result, "input 64x80 does not fit in memory at batch 1; try smaller frames "
                         "(--max-side N shrinks them for the network)", before=before, folder=tmp_path)
