"""--ema: the run validates and saves the moving average of its weights, computed here step by step
from the weights each optimizer step left; it trains on its own weights; resume continues the average
exactly; a decay outside [0, 1) is one error line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import flowcli.training.loop as loop
from flowcli.checkpoint import read_training_extra
from flowcli.training.config import TrainConfig
from flowcli.training.loop import train

CONFIG = TrainConfig(epochs=2, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3, seed=3, augment=False, ema=0.95)


def floats(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_the_run_validates_and_saves_the_average_and_trains_on_its_own_weights(tiny_chairs, tmp_path, monkeypatch):
    start, after_step, validated, models = [], [], [], []
    make_optimizer, optimize_step, validate = loop.make_optimizer, loop.optimize_step, loop.validate

    def remember_model(model, config):
        models.append(model)
        start.append(floats(model))
        return make_optimizer(model, config)

    def record_step(net, model, *args, **kwargs):
        out = optimize_step(net, model, *args, **kwargs)
        after_step.append(floats(model))
        return out

    def record_validation(model, source, **kwargs):
        validated.append(floats(model))
        return validate(model, source, **kwargs)

    monkeypatch.setattr(loop, "make_optimizer", remember_model)
    monkeypatch.setattr(loop, "optimize_step", record_step)
    monkeypatch.setattr(loop, "validate", record_validation)
    train(CONFIG, output=tmp_path / "run", data_dir=tiny_chairs)

    average, at_epoch_end = dict(start[0]), []
    steps_per_epoch = len(after_step) // CONFIG.epochs
    for n, weights in enumerate(after_step, 1):  # the average as average.py defines it, written out
        decay = min(CONFIG.ema, (1 + n) / (10 + n))
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
        if n % steps_per_epoch == 0:
            at_epoch_end.append(average)
    saved, state = load_file(tmp_path / "run" / "last.safetensors"), load_file(tmp_path / "run" / "state.safetensors")
    for key, value in average.items():
        torch.testing.assert_close(saved[key], value, rtol=1e-5, atol=1e-6, msg=key)  # last = the average
        torch.testing.assert_close(state["ema." + key], value, rtol=1e-5, atol=1e-6, msg=key)
        assert torch.equal(state["model." + key], after_step[-1][key]), key  # resume trains its own weights
        assert torch.equal(models[0].state_dict()[key], after_step[-1][key]), key  # given back after saving
        for epoch, seen in enumerate(validated):  # each epoch validated its average
            torch.testing.assert_close(seen[key], at_epoch_end[epoch][key], rtol=1e-5, atol=1e-6, msg=key)
    assert len(validated) == CONFIG.epochs and after_step[-1]["conv1.0.weight"].ne(average["conv1.0.weight"]).any()
    assert read_training_extra(tmp_path / "run" / "state.safetensors")["ema_updates"] == len(after_step)


def test_resume_continues_the_average_exactly(tiny_chairs, tmp_path):
    train(CONFIG, output=tmp_path / "straight", data_dir=tiny_chairs)

    def stop_after_first_epoch(kind, info):
        if kind == "epoch" and info["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(CONFIG, output=tmp_path / "resumed", data_dir=tiny_chairs, on_event=stop_after_first_epoch)
    train(output=tmp_path / "resumed", resume=True)
    for name in ("last.safetensors", "state.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_a_decay_outside_zero_to_one_is_one_error_line(run_cli, tmp_path):
    result = run_cli("train", "--ema", "1", "-o", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr == "error: --ema 1.0: the moving average's decay per step, in [0, 1) (0: none)\n"
    assert not (tmp_path / "run").exists()
