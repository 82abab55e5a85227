"""TrainConfig refuses bad values by name; resolve_config turns a preset, overrides, --init and
--resume into the config a run trains with."""

from __future__ import annotations

import json

import pytest

from flowcli.errors import CheckpointError, TrainingError
from flowcli.training.config import PRESETS, TrainConfig, resolve_config


@pytest.mark.parametrize("change, message", [
    ({"lr": -1.0}, "lr=-1.0: the learning rate must be positive"),
    ({"lr": 0.0}, "lr=0.0: the learning rate must be positive"),
    ({"width": 0.0}, "width=0.0: the channel multiplier must be positive"),
    ({"epochs": 0}, "epochs=0: at least 1 epoch is needed"),
    ({"batch_size": 0}, "batch_size=0: the batch size must be at least 1"),
    ({"steps_per_epoch": 0}, "steps_per_epoch=0: at least 1 step per epoch is needed"),
    ({"minutes": 0.0}, "minutes=0.0: the time budget must be positive"),
    ({"minutes": -5.0}, "minutes=-5.0: the time budget must be positive"),
    ({"crop": (100, 64)}, "crop=100x64: both sides must be positive multiples of 64"),
    ({"crop": (0, 64)}, "crop=0x64: both sides must be positive multiples of 64"),
    ({"split": "all"}, "split='all': choose auto, official, reference, seeded ('all' would leave no validation part)"),
    ({"optimizer": "sgd"}, "optimizer='sgd': choose adam or adamw"),
    ({"warmup": 1.0}, "warmup=1.0: the warm-up is a fraction of the run"),
    ({"num_workers": -1}, "num_workers=-1: must not be negative"),
    ({"batch_norm": True, "batch_size": 1, "crop": (64, 64)},  # conv6 is 1x1: BatchNorm sees one value
     "batch_size=1: BatchNorm in training needs more than one value per channel, and at crop 64x64"),
])
def test_a_bad_value_is_refused_by_name(change, message):
    with pytest.raises(TrainingError) as caught:
        TrainConfig(**change)
    assert str(caught.value).startswith(message)
    with pytest.raises(TrainingError):
        PRESETS["quick"].with_overrides(**change)  # overriding a preset checks too


def test_batchnorm_with_one_value_per_channel_is_fine_when_frozen_or_given_more():
    for change in ({"freeze_bn": True}, {"batch_size": 2}, {"crop": (128, 64)}, {"batch_norm": False}):
        TrainConfig(**{"batch_norm": True, "batch_size": 1, "crop": (64, 64), **change})


def test_config_survives_its_json():
    config = PRESETS["ship"].with_overrides(init="w.safetensors", seed=7)
    assert TrainConfig.from_json(config.to_json()) == config
    assert TrainConfig.from_json(json.dumps({"crop": [128, 192], "retired_option": 1})).crop == (128, 192)


def test_resolve_config_presets_and_overrides():
    assert resolve_config() == PRESETS["quick"]  # generated data: quick
    assert resolve_config(data_dir="chairs") == TrainConfig()  # a folder: the plain defaults
    assert resolve_config("reference", lr=None, epochs=3) == PRESETS["reference"].with_overrides(epochs=3)
    with pytest.raises(TrainingError, match="^preset=tiny: no such preset"):
        resolve_config("tiny")


def test_resolve_config_takes_the_architecture_of_the_init_weights(tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    save_weights(tmp_path / "w.safetensors", FlowNetS(ModelConfig(width=0.5, batch_norm=False)))
    config = resolve_config(init=tmp_path / "w.safetensors")
    assert (config.width, config.batch_norm, config.init) == (0.5, False, str(tmp_path / "w.safetensors"))
    assert resolve_config(init=tmp_path / "w.safetensors", width=1.0).width == 1.0  # train() grows the file to it
    with pytest.raises(CheckpointError, match="no such weights file"):
        resolve_config(init=tmp_path / "none.safetensors")


def test_resolve_config_of_a_resumed_run(tmp_path):
    saved = PRESETS["quick"].with_overrides(epochs=2)
    (tmp_path / "config.json").write_text(json.dumps({"train": json.loads(saved.to_json()), "data_dir": None}))
    assert resolve_config(resume=tmp_path) == saved
    assert resolve_config(resume=tmp_path, epochs=5, minutes=3.0) == saved.with_overrides(epochs=5, minutes=3.0)
    assert resolve_config(resume=tmp_path, lr=saved.lr) == saved  # the saved value itself is no contradiction
    with pytest.raises(TrainingError, match=r"^batch_size=4: the run in .* was set up with batch_size=8; a resumed run keeps"):
        resolve_config(resume=tmp_path, batch_size=4)
    with pytest.raises(TrainingError, match="^preset=ship: a resumed run keeps its saved settings"):
        resolve_config("ship", resume=tmp_path)
    with pytest.raises(TrainingError, match="trains on generated data; leave the data folder out"):
        resolve_config(resume=tmp_path, data_dir=tmp_path)
    with pytest.raises(CheckpointError, match="no run to resume"):
        resolve_config(resume=tmp_path / "elsewhere")
