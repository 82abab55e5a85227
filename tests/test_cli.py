"""The command line: help for every command, one-line errors for bad input (predict and visualize:
test_cli_predict.py, test_cli_visualize.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer

from flowcli.cli import app

COMMANDS = ("predict", "visualize", "train", "eval", "bench", "synth", "info", "export")
REPO = Path(__file__).resolve().parents[1]




# -- help -------------------------------------------------------------------------------------------

def test_version_prints_the_package_version(run_cli):
    from flowcli import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout == f"flowcli {__version__}\n"


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


def test_one_thing_has_one_spelling_in_every_command():
    spellings: dict[str, set[tuple[str, ...]]] = {}
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                spellings.setdefault(param.name, set()).add(tuple(sorted(param.opts + param.secondary_opts)))
    assert spellings["output"] == {("--out", "--output", "-o")}  # train's --out works everywhere
    for shared in ("weights", "device", "dtype", "overwrite", "tta", "passes", "refine", "smooth", "json_out"):
        assert len(spellings[shared]) == 1, (shared, spellings[shared])


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


@pytest.mark.parametrize("args, words", [
    (("eval", "--split", "nonsense"), ("'--split'", "'reference'", "'all'", "flowcli eval --help")),
    (("predict", "a.ppm", "b.ppm", "-o", "f.flo", "--passes", "0"), ("'--passes'", "flowcli predict --help")),
    (("predict",), ("Missing argument", "flowcli predict --help")),
    (("nosuch",), ("No such command 'nosuch'",)),
])
def test_usage_errors_are_one_line_with_exit_code_2(run_cli, args, words):
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr, (word, result.stderr)


# -- bad input: exit 1, one line on stderr, no output -----------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda_fails_cleanly(run_cli, make_pair, tmp_path, assert_clean_failure, visible_files):
    a, b = make_pair(64, 80)
    before = visible_files(tmp_path)
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo", "--weights", "random", "--device", "cuda")
    assert_clean_failure(result, "--device cuda", "CUDA is not available", before=before, folder=tmp_path)


def test_predict_without_weights_says_none_are_shipped(run_cli, make_pair, tmp_path, monkeypatch, assert_clean_failure, visible_files):
    missing = tmp_path / "weights" / "flownets.safetensors"
    monkeypatch.setattr("flowcli.checkpoint.DEFAULT_WEIGHTS", missing)
    a, b = make_pair(64, 80)
    before = visible_files(tmp_path)
    result = run_cli("predict", a, b, "-o", tmp_path / "out.flo")
    assert_clean_failure(result, "the shipped weights are missing", str(missing), "--weights",
                         before=before, folder=tmp_path)


def test_predict_with_a_non_weights_file_fails_cleanly(run_cli, make_pair, tmp_path, assert_clean_failure, visible_files):
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
