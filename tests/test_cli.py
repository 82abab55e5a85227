"""The command line: help for every command, predict/visualize outputs, one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer

from flowcli.cli import app
from flowcli.io import read_flo, read_image, write_flo, write_image
from flowcli.metrics import flow_metrics_np
from flowcli.viz import flow_to_color, panel

COMMANDS = ("predict", "visualize", "train", "eval", "bench", "synth", "info")
REPO = Path(__file__).resolve().parents[1]



def flow_field(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, size=(height, width, 2)).astype(np.float32)


def visible_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def assert_clean_failure(result, *words: str, before: set[str], folder: Path) -> None:
    """Exit code 1 via SystemExit, exactly one 'error: ...' line on stderr, nothing new in `folder`."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert visible_files(folder) == before  # no output, no temporary file left behind


# -- help -------------------------------------------------------------------------------------------

def test_version_prints_the_package_version(run_cli):
    from flowcli import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout == f"flowcli {__version__}\n"


def test_help_lists_every_command(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.stdout, name


def test_every_command_and_parameter_has_help_text(run_cli):
    group = typer.main.get_command(app)
    assert sorted(group.commands) == sorted(COMMANDS)
    for name, command in group.commands.items():
        assert command.help and len(command.help.strip()) > 10, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name} has no help"
        result = run_cli(name, "--help")
        assert result.exit_code == 0, name
        assert "Usage:" in result.stdout and name in result.stdout, name


def test_python_m_flowcli_help_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "flowcli", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    assert "Usage: flowcli" in result.stdout
    for name in COMMANDS:
        assert name in result.stdout, name
    assert result.stderr == ""


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, flowcli.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_error_in_a_real_process_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flowcli", "visualize", str(tmp_path / "missing.flo"),
                             "-o", str(tmp_path / "out.png")], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.flo'}: no such file"
    assert "Traceback" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


# -- predict and visualize: outputs -----------------------------------------------------------------

def test_predict_with_random_weights_writes_flo_and_png(run_cli, make_pair, tmp_path):
    a, b = make_pair(128, 160, shift=(3, -2))
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "160x128" in result.stdout
    flow = read_flo(tmp_path / "out.flo")
    assert flow.shape == (128, 160, 2) and np.isfinite(flow).all()

    result = run_cli("predict", a, b, "-o", tmp_path / "out.png", "--weights", "random")
    assert result.exit_code == 0, result.output
    image = read_image(tmp_path / "out.png")
    assert image.shape == (128, 160, 3)
    assert np.array_equal(image, flow_to_color(flow))  # same seeded model, same flow, same colours
    assert visible_files(tmp_path) == {a.name, b.name, "out.flo", "out.png"}


def test_predict_folder_of_pairs_and_of_video_frames(run_cli, make_pair, tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    a, b = make_pair(64, 80, folder=pairs, name="x")
    make_pair(64, 80, seed=1, folder=pairs, name="y")
    result = run_cli("predict", pairs, "-o", tmp_path / "pair_flows", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert "wrote 2 flows" in result.stdout
    assert visible_files(tmp_path / "pair_flows") == {"x_flow.flo", "y_flow.flo"}
    assert run_cli("predict", a, b, "-o", tmp_path / "x.flo", "--weights", "random").exit_code == 0
    np.testing.assert_allclose(read_flo(tmp_path / "pair_flows" / "x_flow.flo"), read_flo(tmp_path / "x.flo"),
                               atol=1e-5)

    video = tmp_path / "video"
    video.mkdir()
    rng = np.random.default_rng(0)
    for name in ("frame1", "frame2", "frame10", "frame2_flow"):  # name order would put frame10 before frame2;
        write_image(video / f"{name}.png", rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))  # *_flow: an output
    result = run_cli("predict", video, "--sequence", "-o", tmp_path / "video_flows", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert "wrote 2 flows" in result.stdout
    assert visible_files(tmp_path / "video_flows") == {"frame1_flow.flo", "frame2_flow.flo"}
    single = run_cli("predict", video / "frame2.png", video / "frame10.png", "-o", tmp_path / "2to10.flo",
                     "--weights", "random")
    assert single.exit_code == 0, single.output
    np.testing.assert_allclose(read_flo(tmp_path / "video_flows" / "frame2_flow.flo"),
                               read_flo(tmp_path / "2to10.flo"), atol=1e-5)


def test_visualize_flo_writes_a_png_of_its_size(run_cli, tmp_path):
    flow = flow_field(48, 40)
    write_flo(tmp_path / "f.flo", flow)
    result = run_cli("visualize", tmp_path / "f.flo", "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    image = read_image(tmp_path / "f.png")
    assert image.shape == (48, 40, 3)
    assert np.array_equal(image, flow_to_color(flow))

    result = run_cli("visualize", tmp_path / "f.flo", "-o", tmp_path / "g.png", "--max-flow", "100")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_image(tmp_path / "g.png"), flow_to_color(flow, max_flow=100.0))


def test_visualize_pair_with_gt_writes_the_five_tile_panel(run_cli, make_pair, tmp_path):
    a, b = make_pair(64, 80)
    gt = np.zeros((64, 80, 2), np.float32)
    gt[..., 0], gt[..., 1] = 3.0, -2.0
    pred = gt.copy()
    pred[..., 0] += 0.6
    pred[..., 1] += 0.8  # EPE exactly 1
    write_flo(tmp_path / "gt.flo", gt)
    write_flo(tmp_path / "pred.flo", pred)
    result = run_cli("visualize", tmp_path / "pred.flo", "--pair", a, b, "--gt", tmp_path / "gt.flo",
                     "-o", tmp_path / "panel.png")
    assert result.exit_code == 0, result.output
    assert "EPE 1.000 px" in result.stdout
    image = read_image(tmp_path / "panel.png")
    assert image.shape == (64, 5 * 80 + 4 * 4, 3)
    assert np.array_equal(image, panel(read_image(a), read_image(b), pred, gt))

    result = run_cli("visualize", tmp_path / "pred.flo", "--pair", a, b, "-o", tmp_path / "three.png")
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "three.png").shape == (64, 3 * 80 + 2 * 4, 3)


def test_visualize_the_real_flying_chairs_flow(run_cli, shared_fixtures, tmp_path):
    result = run_cli("visualize", shared_fixtures / "00001_flow.flo", "-o", tmp_path / "chairs.png")
    assert result.exit_code == 0, result.output
    image = read_image(tmp_path / "chairs.png")
    assert image.shape == (50, 50, 3)
    assert np.array_equal(image, flow_to_color(read_flo(shared_fixtures / "00001_flow.flo")))
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # a real, varied field


def test_visualize_the_real_pair_with_the_shipped_weights_tta_and_refine(run_cli, shared_fixtures, tmp_path):
    """The 50x50 pair goes through the upscaling path; the EPE printed is that of `flowcli eval`."""
    files = [shared_fixtures / f"00001_{n}" for n in ("img1.ppm", "img2.ppm", "flow.flo")]
    printed = {}
    for extra in ([], ["--tta", "hflip", "--refine", "2"]):
        result = run_cli("visualize", "--pair", files[0], files[1], "--gt", files[2], *extra, "-o", tmp_path / "p.png")
        assert result.exit_code == 0, result.output
        printed[len(extra)] = float(result.stdout.split("EPE ")[1].split()[0])
        assert read_image(tmp_path / "p.png").shape == (50, 5 * 50 + 16, 3)
    # measured once (flowcli eval, torch 2.13 CPU): 0.784 with the defaults, 0.570 with both options
    assert printed[0] == pytest.approx(0.784, abs=0.05) and printed[4] == pytest.approx(0.570, abs=0.05)


def test_visualize_pair_predicts_with_the_model(run_cli, make_pair, tmp_path):
    a, b = make_pair(64, 80)
    write_flo(tmp_path / "gt.flo", flow_field(64, 80))
    result = run_cli("visualize", "--pair", a, b, "--gt", tmp_path / "gt.flo", "--weights", "random",
                     "-o", tmp_path / "panel.png")
    assert result.exit_code == 0, result.output
    assert "EPE" in result.stdout
    assert read_image(tmp_path / "panel.png").shape == (64, 5 * 80 + 16, 3)


# -- bad input: exit 1, one line on stderr, no output -----------------------------------------------

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
        return ["predict", a, c, "-o", out], ["80x64", "96x64", "same size"]
    if case == "output folder missing":
        return ["predict", a, b, "-o", tmp_path / "nowhere" / "out.flo"], ["nowhere", "does not exist"]
    if case == "output suffix":
        return ["predict", a, b, "-o", tmp_path / "out.txt"], ["out.txt", ".flo or .png"]
    if case == "no second image":
        return ["predict", a, "-o", out], ["give a second image"]
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
    raise AssertionError(case)


PREDICT_CASES = ["missing file", "directory as image", "not an image", "different sizes",
                 "output folder missing", "output suffix", "no second image",
                 "empty folder", "frames without --sequence", "one frame", "--sequence of two files"]


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_bad_input_fails_cleanly(run_cli, make_pair, tmp_path, case):
    args, words = _predict_case(case, tmp_path, make_pair)
    before = visible_files(tmp_path)
    result = run_cli(*args, "--weights", "random")
    assert_clean_failure(result, *words, before=before, folder=tmp_path)


def _visualize_case(case: str, tmp_path: Path, make_pair) -> tuple[list, list[str]]:
    out = tmp_path / "out.png"
    good = tmp_path / "good.flo"
    write_flo(good, flow_field(64, 80))
    if case == "wrong magic":
        (tmp_path / "magic.flo").write_bytes(b"PIEX" + good.read_bytes()[4:])
        return ["visualize", tmp_path / "magic.flo", "-o", out], ["magic.flo", "not a .flo file"]
    if case == "truncated flo":
        (tmp_path / "cut.flo").write_bytes(good.read_bytes()[:-5])
        return ["visualize", tmp_path / "cut.flo", "-o", out], ["cut.flo", "truncated"]
    if case == "missing flo":
        return ["visualize", tmp_path / "gone.flo", "-o", out], ["gone.flo", "no such file"]
    if case == "directory as flo":
        (tmp_path / "dir.flo").mkdir()
        return ["visualize", tmp_path / "dir.flo", "-o", out], ["dir.flo", "is a directory"]
    if case == "output folder missing":
        return ["visualize", good, "-o", tmp_path / "nowhere" / "out.png"], ["nowhere", "does not exist"]
    if case == "output not png":
        return ["visualize", good, "-o", tmp_path / "out.jpg"], ["out.jpg", ".png"]
    if case == "nothing to draw":
        return ["visualize", "-o", out], ["give a .flo file"]
    a, b = make_pair(64, 80)
    if case == "pair of different sizes":
        c, _ = make_pair(72, 80, name="c")
        return ["visualize", good, "--pair", a, c, "-o", out], ["80x64", "80x72"]
    if case == "gt of another size":
        write_flo(tmp_path / "gt.flo", flow_field(64, 96))
        return ["visualize", good, "--pair", a, b, "--gt", tmp_path / "gt.flo", "-o", out], \
            ["ground truth is 96x64", "80x64"]
    if case == "gt truncated":
        (tmp_path / "gt.flo").write_bytes(good.read_bytes()[:100])
        return ["visualize", good, "--pair", a, b, "--gt", tmp_path / "gt.flo", "-o", out], \
            ["gt.flo", "truncated"]
    raise AssertionError(case)


VISUALIZE_CASES = ["wrong magic", "truncated flo", "missing flo", "directory as flo", "output folder missing",
                   "output not png", "nothing to draw", "pair of different sizes",
                   "gt of another size", "gt truncated"]


@pytest.mark.parametrize("case", VISUALIZE_CASES)
def test_visualize_bad_input_fails_cleanly(run_cli, make_pair, tmp_path, case):
    args, words = _visualize_case(case, tmp_path, make_pair)
    before = visible_files(tmp_path)
    result = run_cli(*args)
    assert_clean_failure(result, *words, before=before, folder=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda_fails_cleanly(run_cli, make_pair, tmp_path):
    a, b = make_pair(64, 80)
    before = visible_files(tmp_path)
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random", "--device", "cuda")
    assert_clean_failure(result, "--device cuda", "CUDA is not available", before=before, folder=tmp_path)


def test_predict_without_weights_says_none_are_shipped(run_cli, make_pair, tmp_path, monkeypatch):
    missing = tmp_path / "weights" / "flownets.safetensors"
    monkeypatch.setattr("flowcli.checkpoint.DEFAULT_WEIGHTS", missing)
    a, b = make_pair(64, 80)
    before = visible_files(tmp_path)
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo")
    assert_clean_failure(result, "no trained weights shipped yet", str(missing), "--weights",
                         before=before, folder=tmp_path)


def test_predict_with_a_non_weights_file_fails_cleanly(run_cli, make_pair, tmp_path):
    a, b = make_pair(64, 80)
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors at all" * 4)
    before = visible_files(tmp_path)
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", tmp_path / "w.safetensors")
    assert_clean_failure(result, "w.safetensors", "not a safetensors file", before=before, folder=tmp_path)


@pytest.mark.parametrize("name", ["scene[left].flo", "q[/x].flo"])
def test_error_names_a_file_with_brackets_verbatim(run_cli, tmp_path, name):
    missing = tmp_path / name  # "q[/x].flo" is the file "x].flo" in the (missing) folder "q["
    result = run_cli("visualize", missing, "-o", tmp_path / "out.png")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == f"error: {missing}: no such file"


def test_train_init_takes_the_architecture_of_the_weights_file(run_cli, tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    save_weights(tmp_path / "wide.safetensors", FlowNetS(ModelConfig(width=0.5, batch_norm=False)))
    result = run_cli("train", "--init", tmp_path / "wide.safetensors", "--out", tmp_path / "run",
                     "--epochs", 1, "--steps-per-epoch", 1, "--batch-size", 2, "--crop", "64x64", "--freeze-bn")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["width"], saved["batch_norm"]) == (0.5, False)  # the quick preset says 0.25 with BN
    assert saved["init"] == str(tmp_path / "wide.safetensors") and saved["freeze_bn"] is True


def test_train_init_with_a_missing_file_fails_cleanly(run_cli, tmp_path):
    before = visible_files(tmp_path)
    result = run_cli("train", "--init", tmp_path / "nope.safetensors", "--out", tmp_path / "run")
    assert_clean_failure(result, "no such weights file", "nope.safetensors", before=before, folder=tmp_path)
