"""flowcli.checkpoint: safetensors weights carrying their architecture; every failure a CheckpointError."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flowcli.errors import CheckpointError, TrainingError
from flowcli.model import FlowNetS, ModelConfig

import flowcli.checkpoint as checkpoint
from flowcli.checkpoint import (FORMAT, load_model, load_training_state, metadata_json, read_config,
                                read_training_extra, save_training_state, save_weights)

SMALL = ModelConfig(width=0.25)


@pytest.fixture(scope="module")
def small_model() -> FlowNetS:
    torch.manual_seed(1)
    return FlowNetS(SMALL).eval()


@pytest.fixture(scope="module")
def frames():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 64, 128, generator=generator), torch.rand(1, 3, 64, 128, generator=generator)


def test_round_trip_gives_identical_outputs(tmp_path, small_model, frames):
    path = tmp_path / "w.safetensors"
    save_weights(path, small_model)
    loaded = load_model(path)
    assert loaded.config == SMALL
    assert not loaded.training
    for name, tensor in small_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with torch.no_grad():
        assert torch.equal(loaded(*frames), small_model(*frames))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_round_trip_with_batch_norm_keeps_running_statistics(tmp_path, frames):
    torch.manual_seed(2)
    model = FlowNetS(ModelConfig(width=0.25, batch_norm=True)).train()
    with torch.no_grad():
        model(*frames)  # one training-mode pass updates the running statistics
    model.eval()
    path = tmp_path / "bn.safetensors"
    save_weights(path, model)
    loaded = load_model(path)
    assert torch.equal(loaded.conv1[1].running_mean, model.conv1[1].running_mean)
    assert loaded.conv1[1].num_batches_tracked.item() == 1
    with torch.no_grad():
        assert torch.equal(loaded(*frames), model(*frames))


def test_fp16_storage_is_half_the_size_and_outputs_close(tmp_path, small_model, frames):
    full, half = tmp_path / "fp32.safetensors", tmp_path / "fp16.safetensors"
    save_weights(full, small_model)
    save_weights(half, small_model, dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())  # upcast into the model
    with torch.no_grad():
        reference, got = small_model(*frames), loaded(*frames)
    scale = reference.abs().max().item()
    assert scale > 0
    assert torch.allclose(got, reference, rtol=1e-2, atol=1e-2 * scale)
    assert not torch.equal(got, reference)  # really went through fp16


def test_metadata_holds_the_config_and_extra_fields(tmp_path, small_model):
    path = tmp_path / "w.safetensors"
    save_weights(path, small_model, metadata={"epochs": "3", "note": "smoke test"})
    assert read_config(path) == SMALL
    meta = metadata_json(path)
    assert meta["format"] == FORMAT
    # a bilinear network's config is written as before the upsampler existed, so older flowcli reads it
    assert meta["config"] == {k: v for k, v in asdict(SMALL).items() if k != "upsampler"}
    assert meta["epochs"] == 3 and meta["note"] == "smoke test"


def test_config_asked_for_must_match_the_file(tmp_path, small_model):
    """Every field counts, not the width alone; the other layout gets its own one line."""
    path = tmp_path / "w.safetensors"
    save_weights(path, small_model)
    assert load_model(path, config=SMALL).config == SMALL
    for field in (dict(width=0.5), dict(batch_norm=True), dict(upsampler="convex"), dict(flow_scale=1.0)):
        asked = ModelConfig(**{**asdict(SMALL), **field})
        with pytest.raises(CheckpointError) as info:
            load_model(path, config=asked)
        assert str(info.value) == f"{path}: holds {SMALL}, but {asked} was asked for", field
    with pytest.raises(CheckpointError) as info:
        load_model(path, config=ModelConfig(width=0.25, arch="reference"))
    assert str(info.value).startswith(f"{path}: holds a 'flownets' network, but arch=reference: weights of one "
                                      "architecture do not load into the other")


def test_tensors_of_another_architecture_raise_a_one_line_error(tmp_path):
    torch.manual_seed(0)
    wider = FlowNetS(ModelConfig(width=0.5))
    path = tmp_path / "lying.safetensors"
    save_file({k: v.contiguous() for k, v in wider.state_dict().items()}, str(path),
              metadata={"format": FORMAT, "config": SMALL.to_json()})
    with pytest.raises(CheckpointError, match="do not match") as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert len(message) < 300 + len(str(path))
    assert "of another shape" in message


def test_missing_and_extra_tensors_are_reported(tmp_path, small_model):
    state = {k: v.contiguous() for k, v in small_model.state_dict().items()}
    state.pop("conv1.0.weight")
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path), metadata={"format": FORMAT, "config": SMALL.to_json()})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "1 missing (e.g. conv1.0.weight)" in message
    assert "1 unexpected (e.g. extra.weight)" in message


def test_non_safetensors_file_raises(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00\x01 definitely not a safetensors header" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_safetensors_without_flowcli_metadata_raises(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a flowcli weights file"):
        load_model(path)


def test_bad_architecture_metadata_raises(tmp_path):
    path = tmp_path / "bad-config.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": FORMAT, "config": '{"depth": 3}'})
    with pytest.raises(CheckpointError, match="bad architecture metadata"):
        load_model(path)


def test_missing_explicit_file_and_directory_raise(tmp_path):
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_model(tmp_path)


def test_missing_default_weights_says_none_are_shipped(tmp_path, monkeypatch):
    missing = tmp_path / "weights" / "flownets.safetensors"
    monkeypatch.setattr(checkpoint, "DEFAULT_WEIGHTS", missing)
    with pytest.raises(CheckpointError) as info:
        load_model()
    message = str(info.value)
    assert message.startswith("the shipped weights are missing")
    assert str(missing) in message and "weights=PATH" in message  # the library names its parameter
    assert "\n" not in message


def test_the_shipped_weights_are_found_beside_the_package_else_where_the_install_recorded_them(tmp_path):
    root, stale, installed = tmp_path / "site-packages", tmp_path / "stale", tmp_path / "usr-local" / "weights"
    recorded = lambda: [stale, installed]  # noqa: E731  the install's record; `stale` lost its file
    assert checkpoint.find_weights_dir(root, recorded) == root / "weights"  # none anywhere: named in the error
    installed.mkdir(parents=True)
    (installed / "flownets.safetensors").write_bytes(b"w")
    assert checkpoint.find_weights_dir(root, recorded) == installed  # pip install .: where it put them
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "flownets.safetensors").write_bytes(b"w")
    assert checkpoint.find_weights_dir(root, recorded) == root / "weights"  # a clone's own files first


def test_random_weights_are_seeded():
    a = load_model("random", config=SMALL, seed=3)
    b = load_model("random", config=SMALL, seed=3)
    c = load_model("random", config=SMALL, seed=4)
    assert not a.training
    assert torch.equal(a.conv1[0].weight, b.conv1[0].weight)
    assert not torch.equal(a.conv1[0].weight, c.conv1[0].weight)


def test_random_weights_without_a_config_have_the_shipped_default_architecture():
    assert load_model("random").config == read_config(checkpoint.DEFAULT_WEIGHTS)


def test_save_into_missing_folder_raises_and_writes_nothing(tmp_path, small_model):
    with pytest.raises(FileNotFoundError):
        save_weights(tmp_path / "no" / "w.safetensors", small_model)
    assert list(tmp_path.iterdir()) == []


def test_saved_weights_get_the_usual_file_mode_not_the_temporary_files(tmp_path, small_model):
    """Written through a 0600 temporary file that safetensors recreates; readable like any output."""
    import os
    import stat

    umask = os.umask(0o022)
    try:
        save_weights(tmp_path / "w.safetensors", small_model)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644


def test_training_state_round_trip_restores_model_and_optimizer(tmp_path):
    def set_grads(model, seed):  # stands in for a backward pass, at no cost
        generator = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)

    torch.manual_seed(3)
    model = FlowNetS(ModelConfig(width=0.25, batch_norm=True)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for seed in (0, 1):  # Adam's moments and step count away from their initial values
        set_grads(model, seed)
        optimizer.step()
    with torch.no_grad():
        model.conv1[1].running_mean.uniform_()  # as a training forward pass would move it
    path = tmp_path / "state.safetensors"
    save_training_state(path, model, optimizer, {"epoch": 2, "best_val_epe": 3.25})
    assert read_training_extra(path) == {"epoch": 2, "best_val_epe": 3.25}

    torch.manual_seed(4)
    restored = FlowNetS(ModelConfig(width=0.25, batch_norm=True)).train()
    restored_opt = torch.optim.AdamW(restored.parameters(), lr=0.5)
    assert load_training_state(path, restored, restored_opt) == {"epoch": 2, "best_val_epe": 3.25}
    for name, tensor in model.state_dict().items():  # BatchNorm running statistics included
        assert torch.equal(restored.state_dict()[name], tensor), name
    assert restored_opt.param_groups[0]["lr"] == 1e-3 and restored_opt.param_groups[0]["weight_decay"] == 1e-4
    saved_state, restored_state = optimizer.state_dict()["state"], restored_opt.state_dict()["state"]
    assert saved_state.keys() == restored_state.keys() and len(saved_state) == len(list(model.parameters()))
    for index, state in saved_state.items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(restored_state[index][key]), torch.as_tensor(value)), (index, key)
    # the next step is the same step: the restored pair goes on exactly where the saved one was
    for m, opt in ((model, optimizer), (restored, restored_opt)):
        set_grads(m, 2)
        opt.step()
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_training_state_errors_name_the_file(tmp_path, small_model):
    optimizer = torch.optim.AdamW(small_model.parameters())
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        load_training_state(tmp_path / "state.safetensors", small_model, optimizer)
    weights = tmp_path / "w.safetensors"
    save_weights(weights, small_model)  # a weights file, not a training state
    with pytest.raises(CheckpointError, match="not a training-state file") as info:
        load_training_state(weights, small_model, optimizer)
    assert str(weights) in str(info.value)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unreadable training state"):
        read_training_extra(junk)


def test_shipped_networks_are_named_and_a_file_of_that_name_needs_a_folder(tmp_path, monkeypatch, small_model):
    assert checkpoint.weights_path(None) == checkpoint.DEFAULT_WEIGHTS == checkpoint.SHIPPED["fast"]
    assert checkpoint.weights_path("accurate") == checkpoint.SHIPPED["accurate"] != checkpoint.SHIPPED["fast"]
    assert load_model("accurate").config.width == 0.5
    monkeypatch.chdir(tmp_path)
    save_weights(tmp_path / "accurate", small_model)
    assert load_model("./accurate").config.width == 0.25  # the user's file, not the shipped network
    assert load_model(Path("accurate")).config.width == 0.25  # a Path is always a file


def test_a_run_can_start_from_a_shipped_network_by_name(run_cli, tiny_chairs, tmp_path, monkeypatch, small_model):
    from flowcli.training.config import resolve_config

    config = resolve_config("gpu", init="accurate")
    assert config.init == "accurate" and config.width == 0.5  # the name, not this machine's path to it
    # the CLI hands the name on as text; ./accurate is the user's file
    monkeypatch.chdir(tmp_path)
    save_weights(tmp_path / "accurate", small_model)
    for init, width in (("accurate", 0.5), ("./accurate", 0.25)):
        result = run_cli("train", tiny_chairs, "--init", init, "--epochs", 1, "--batch-size", 4, "--crop", "64x64",
                         "-o", tmp_path / f"run{width}")
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / f"run{width}" / "config.json").read_text())["train"]["width"] == width
    # resuming names the same file the same way; another one is refused
    assert json.loads((tmp_path / "run0.25" / "config.json").read_text())["train"]["init"] == str(tmp_path / "accurate")
    assert resolve_config(init="accurate", resume=tmp_path / "run0.5").init == "accurate"
    with pytest.raises(TrainingError, match="^init='fast': the run in"):
        resolve_config(init="fast", resume=tmp_path / "run0.5")
