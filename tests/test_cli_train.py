"""`flowcli train`: bad input is one error line before any folder is made, a run is never clobbered
unasked, --resume continues, extends or says the run is finished, and --json writes the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flowcli.training.config import TrainConfig
from flowcli.training.loop import train

TINY = ("--epochs", 1, "--batch-size", 4, "--crop", "64x64", "--width", 0.25)


@pytest.fixture(scope="module")
def finished(tiny_chairs, tmp_path_factory) -> Path:
    """A finished 2-epoch run on folder data."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(epochs=2, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3), output=run, data_dir=tiny_chairs)
    return run


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def error_line(result) -> str:
    """The one line a failed command prints: exit code 1, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("option, value, message", [
    ("--lr", "-1", "--lr -1.0: the learning rate must be positive"),
    ("--minutes", "0", "--minutes 0.0: the time budget must be positive (leave it out for none)"),
    ("--epochs", "0", "--epochs 0: at least 1 epoch is needed"),
    ("--width", "0", "--width 0.0: the channel multiplier must be positive"),
    ("--batch-size", "0", "--batch-size 0: the batch size must be at least 1"),
    ("--steps-per-epoch", "0", "--steps-per-epoch 0: at least 1 step per epoch is needed"),
    ("--crop", "100x64", "--crop 100x64: both sides must be positive multiples of 64"),
    ("--split", "all", "--split all: choose auto, official, reference, seeded ('all' would leave no validation part)"),
])
def test_a_bad_value_is_one_line_and_makes_no_folder(run_cli, tmp_path, option, value, message):
    result = run_cli("train", "-o", tmp_path / "run", option, value)
    assert error_line(result) == f"error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_bad_data_leaves_no_run_folder(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("train", tmp_path / "empty", "--output", tmp_path / "runs" / "a", *TINY)
    assert "no Flying Chairs pairs" in error_line(result)
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_a_folder_holding_a_run_is_refused_without_overwrite(run_cli, tiny_chairs, run_copy):
    before = snapshot(run_copy)
    result = run_cli("train", tiny_chairs, "--out", run_copy, *TINY)
    assert error_line(result) == (f"error: {run_copy}: already holds a training run; "
                                  "--resume continues it, --overwrite replaces it")
    assert snapshot(run_copy) == before


def test_overwrite_replaces_the_run_and_json_writes_the_result(run_cli, tiny_chairs, run_copy, tmp_path):
    result = run_cli("train", tiny_chairs, "-o", run_copy, "--overwrite", *TINY, "--json", tmp_path / "result.json")
    assert result.exit_code == 0, result.output
    log = (run_copy / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1]  # the old run's two epochs are gone
    written = json.loads((tmp_path / "result.json").read_text())
    assert (written["run_dir"], written["epoch"], written["trained_epochs"]) == (str(run_copy), 1, 1)
    assert written["best_val_epe"] == json.loads(log[0])["val_epe"]
    assert written["weights"] == str(run_copy / "best.safetensors")


def test_resuming_a_finished_run_says_so_in_one_line(run_cli, run_copy):
    before = snapshot(run_copy)
    result = run_cli("train", "--resume", run_copy)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{run_copy}: finished at epoch 2 of 2; to train on, resume with --epochs N (N > 2)\n"
    assert snapshot(run_copy) == before


def test_resume_with_more_epochs_extends_the_run(run_cli, run_copy):
    result = run_cli("train", "--resume", run_copy, "--epochs", 3)
    assert result.exit_code == 0, result.output
    assert "3 of 3" in result.stdout
    log = [json.loads(line) for line in (run_copy / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert json.loads((run_copy / "config.json").read_text())["train"]["epochs"] == 3


@pytest.mark.parametrize("args, message", [
    (("--lr", "0.5"), "--lr 0.5: the run in {run} was set up with --lr 0.001; a resumed run keeps its settings "
                      "(only epochs, minutes, workers and compile may change)"),
    (("--no-augment",), "--no-augment: the run in {run} was set up with --augment; a resumed run keeps its "
                        "settings (only epochs, minutes, workers and compile may change)"),  # not "--augment False"
    (("--preset", "ship"), "--preset ship: a resumed run keeps its saved settings; leave the preset out"),
    (("-o", "elsewhere"), "--output elsewhere: --resume {run} names the run folder; leave --output out"),
    (("--overwrite",), "--overwrite: a resumed run goes on in its own folder; choose one of the two"),
])
def test_resume_refuses_options_that_contradict_the_run(run_cli, run_copy, args, message):
    before = snapshot(run_copy)
    result = run_cli("train", "--resume", run_copy, *args)
    assert error_line(result) == "error: " + message.format(run=run_copy)
    assert snapshot(run_copy) == before


def test_interrupt_before_the_first_checkpoint_does_not_offer_resume(run_cli, tmp_path, monkeypatch):
    import flowcli.training.loop as loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    result = run_cli("train", "-o", tmp_path / "run")
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted before the first checkpoint; nothing was kept"


def test_train_init_takes_the_architecture_of_the_weights_file(run_cli, tiny_chairs, tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    save_weights(tmp_path / "wide.safetensors", FlowNetS(ModelConfig(width=0.5, batch_norm=False)))
    result = run_cli("train", tiny_chairs, "--preset", "quick", "--init", tmp_path / "wide.safetensors", "--out",
                     tmp_path / "run", "--epochs", 1, "--batch-size", 4, "--crop", "64x64", "--freeze-bn")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["width"], saved["batch_norm"]) == (0.5, False)  # the quick preset says 0.25 with BN
    assert saved["init"] == str(tmp_path / "wide.safetensors") and saved["freeze_bn"] is True


def test_train_init_with_a_missing_file_fails_cleanly(run_cli, tmp_path):
    result = run_cli("train", "--init", tmp_path / "nope.safetensors", "--out", tmp_path / "run")
    line = error_line(result)
    assert "no such weights file" in line and "nope.safetensors" in line
    assert list(tmp_path.iterdir()) == []
