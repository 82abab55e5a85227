"""`flowcli info`: the weights file's facts, and --pipeline's ordered steps."""

from __future__ import annotations

from flowcli.inference.options import InferenceOptions
from flowcli.inference.pipeline import describe_pipeline


def test_info_pipeline_prints_the_default_steps_numbered(run_cli):
    result = run_cli("info", "--pipeline")
    assert result.exit_code == 0, result.output
    expected = [f"{n}. {line}" for n, line in enumerate(describe_pipeline(InferenceOptions()), 1)]
    assert result.stdout.splitlines() == expected
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == ["1. network", "2. refine", "3. smooth"]


def test_info_pipeline_follows_the_options(run_cli):
    result = run_cli("info", "--pipeline", "--passes", "2", "--no-smooth", "--refine", "0")
    assert result.exit_code == 0, result.output
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == ["1. network", "2. pass 2"]


def test_info_shows_the_architecture_and_parameter_count(run_cli, tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    save_weights(tmp_path / "w.safetensors", FlowNetS(ModelConfig(width=0.25)), metadata={"epochs": "2"})
    result = run_cli("info", "--weights", tmp_path / "w.safetensors")
    assert result.exit_code == 0, result.output
    assert "2,436,160" in result.stdout  # width 0.25: see test_model for the layer list
    assert '"width": 0.25' in result.stdout and "epochs" in result.stdout


def test_info_names_the_shipped_accurate_network(run_cli):
    result = run_cli("info", "--weights", "accurate")
    assert result.exit_code == 0, result.output
    assert "flownets-accurate.safetensors" in result.stdout and "9,729,344" in result.stdout
