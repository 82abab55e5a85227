"""Training: the loss falls, resume equals a straight run, NaN stops cleanly, DDP runs, CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowcli.cli.common import Preset
from flowcli.training.config import PRESETS, TrainConfig
from flowcli.errors import CheckpointError, DataError, TrainingError
from flowcli.data.synth import SynthConfig, write_dataset
from flowcli.training.loop import train

TINY = TrainConfig(epochs=2, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3, seed=3, augment=True)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chairs")
    write_dataset(folder, count=16, seed=5, config=SynthConfig(height=64, width=96))
    return folder


def test_every_preset_is_offered_by_the_cli_and_its_crop_fits_its_scenes():
    assert {p.value for p in Preset} == set(PRESETS)
    for name, config in PRESETS.items():
        assert all(side % 64 == 0 for side in config.crop), name
        assert config.crop[0] <= config.synth_size[0] and config.crop[1] <= config.synth_size[1], name


def test_training_lowers_the_loss(tmp_path):
    folder = tmp_path / "chairs"  # 64x64 pairs: the crop is the whole image, so epochs compare
    write_dataset(folder, count=16, seed=5, config=SynthConfig(height=64, width=64))
    config = TrainConfig(epochs=30, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3, seed=0,
                         augment=False, schedule="constant")
    summary = train(config, out_dir=tmp_path / "run", data_dir=folder)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 31))
    first, last = log[0]["train_loss"], sum(r["train_loss"] for r in log[-3:]) / 3
    assert last < 0.5 * first, (first, last)  # measured: 1.89 -> about 0.5
    assert summary["best_val_epe"] == min(r["val_epe"] for r in log)
    for name in ("config.json", "split.json", "last.safetensors", "best.safetensors", "state.safetensors"):
        assert (tmp_path / "run" / name).is_file()
    assert {"train_loss", "train_epe", "val_epe", "lr", "images_per_s", "data_share"} <= set(log[0])
    assert 0.0 <= log[0]["data_share"] <= 1.0


def test_resume_matches_a_straight_run(tiny_folder, tmp_path):
    straight = tmp_path / "straight"
    train(TINY, out_dir=straight, data_dir=tiny_folder)

    def stop_after_first_epoch(kind, info):
        if kind == "epoch" and info["epoch"] == 1:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(TINY, out_dir=resumed, data_dir=tiny_folder, on_event=stop_after_first_epoch)
    assert len((resumed / "log.jsonl").read_text().splitlines()) == 1
    events = []
    train(TrainConfig(), out_dir=resumed, resume=True, on_event=lambda kind, info: events.append((kind, info)))
    assert events[0][1]["start_epoch"] == 1  # the saved config (2 epochs, tiny) was reused
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len((resumed / "log.jsonl").read_text().splitlines()) == 2


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no run to resume"):
        train(TINY, out_dir=tmp_path, resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_folder, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    real = train_module.multiscale_epe
    calls = {"n": 0}

    def poisoned(pyramid, flow, valid):
        calls["n"] += 1
        loss, metrics = real(pyramid, flow, valid)
        return (loss * float("nan"), metrics) if calls["n"] > 3 else (loss, metrics)  # epoch 2

    config = TrainConfig(epochs=3, batch_size=4, crop=(64, 64), width=0.25, seed=0, augment=False)
    monkeypatch.setattr(train_module, "multiscale_epe", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 1.*last good checkpoint"):
        train(config, out_dir=tmp_path / "run", data_dir=tiny_folder)
    weights = load_file(tmp_path / "run" / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1


def test_bad_training_inputs(tiny_folder, tmp_path):
    with pytest.raises(DataError, match="larger than the"):
        train(TINY.with_overrides(batch_size=64), out_dir=tmp_path / "a", data_dir=tiny_folder)
    with pytest.raises(DataError, match="multiples of 64"):
        train(TINY.with_overrides(crop=(100, 64)), out_dir=tmp_path / "b", data_dir=tiny_folder)
    with pytest.raises(DataError, match="smaller than the crop"):
        train(TINY.with_overrides(crop=(128, 128), augment=False), out_dir=tmp_path / "c", data_dir=tiny_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no Flying Chairs pairs"):
        train(TINY, out_dir=tmp_path / "d", data_dir=empty)


def test_generated_data_training_runs(tmp_path):
    config = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.25, steps_per_epoch=3,
                         synth_size=(96, 128), val_count=2)
    summary = train(config, out_dir=tmp_path / "run")
    assert summary["epoch"] == 1 and summary["val_epe"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] is None


def test_background_generation_gives_the_same_batches_in_the_same_order():
    from flowcli.training.sources import SynthSource

    config = TrainConfig(batch_size=2, steps_per_epoch=5, synth_reuse=2, synth_size=(64, 96), val_count=1)
    inline = list(SynthSource(config, device=torch.device("cpu")).epoch(3))
    threaded = SynthSource(config.with_overrides(num_workers=1), device=torch.device("cpu"))
    ahead = list(threaded.epoch(3))
    assert len(inline) == len(ahead) == 6  # 3 generated batches, each used twice (5 steps asked)
    assert inline[0][0] is inline[1][0] and not torch.equal(inline[0][0], inline[2][0])
    for a, b in zip(inline, ahead):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    stream = threaded.epoch(4)
    next(stream)
    stream.close()  # leaving early stops the background thread instead of hanging


def test_init_starts_from_the_given_weights(tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    torch.manual_seed(11)
    start = FlowNetS(ModelConfig(width=0.25))
    save_weights(tmp_path / "start.safetensors", start)
    config = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.25, steps_per_epoch=1, lr=0.0,
                         schedule="constant", synth_size=(64, 96), val_count=1, init=str(tmp_path / "start.safetensors"))
    train(config, out_dir=tmp_path / "run")
    after = load_file(str(tmp_path / "run" / "last.safetensors"))
    assert all(torch.equal(after[k], v) for k, v in start.state_dict().items())  # lr 0: nothing moved
    fresh = TrainConfig(**{**config.__dict__, "init": None})
    train(fresh, out_dir=tmp_path / "fresh")
    other = load_file(str(tmp_path / "fresh" / "last.safetensors"))
    assert not torch.equal(other["conv1.0.weight"], after["conv1.0.weight"])


def test_freeze_bn_keeps_batchnorm_statistics_and_trains_the_rest(tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    torch.manual_seed(12)
    start = FlowNetS(ModelConfig(width=0.25, batch_norm=True))
    save_weights(tmp_path / "start.safetensors", start)
    config = TrainConfig(epochs=2, batch_size=2, crop=(64, 64), width=0.25, batch_norm=True, steps_per_epoch=2,
                         synth_size=(64, 96), val_count=1, init=str(tmp_path / "start.safetensors"))
    runs = {}
    for freeze in (True, False):
        train(config.with_overrides(freeze_bn=freeze), out_dir=tmp_path / str(freeze))
        runs[freeze] = load_file(str(tmp_path / str(freeze) / "last.safetensors"))
    stats = [k for k in runs[True] if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in start.modules()) > 0
    before = start.state_dict()
    assert all(torch.equal(runs[True][k], before[k]) for k in stats)  # two epochs, a validation between
    assert not all(torch.equal(runs[False][k], before[k]) for k in stats)
    assert not torch.equal(runs[True]["conv1.0.weight"], before["conv1.0.weight"])


def test_validation_leaves_each_layer_in_its_mode():
    from flowcli.model import FlowNetS, ModelConfig
    from flowcli.training.loop import set_train_mode, validate

    model = FlowNetS(ModelConfig(width=0.25, batch_norm=True))
    set_train_mode(model, freeze_bn=True)
    modes = [m.training for m in model.modules()]
    assert True in modes and False in modes
    data = [(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.zeros(1, 2, 64, 64), torch.ones(1, 64, 64))]
    validate(model, type("Source", (), {"validation": lambda self: data})())
    assert [m.training for m in model.modules()] == modes


def test_init_with_another_architecture_is_refused(tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    save_weights(tmp_path / "narrow.safetensors", FlowNetS(ModelConfig(width=0.25)))
    config = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.5, steps_per_epoch=1,
                         synth_size=(64, 96), val_count=1, init=str(tmp_path / "narrow.safetensors"))
    with pytest.raises(CheckpointError, match="holds ModelConfig.width=0.25.*asks for ModelConfig.width=0.5"):
        train(config, out_dir=tmp_path / "run")


def test_ddp_with_two_gloo_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "flowcli", "train", "--out", str(tmp_path / "ddp"), "--preset", "quick", "--epochs", "1",
           "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64x64", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["epoch"] == 1  # one writer, one line per epoch
    assert (tmp_path / "ddp" / "best.safetensors").is_file()
