"""Training: the loss falls, resume equals a straight run and extends a finished one, run folders are
never clobbered or left half-made, NaN stops cleanly, DDP equals one process on the combined batch."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flowcli.data.scenes import SynthConfig
from flowcli.data.synth import write_dataset
from flowcli.errors import CheckpointError, DataError, DeviceError, TrainingError
from flowcli.training.config import PRESETS, TrainConfig
from flowcli.training.loop import train

TINY = TrainConfig(epochs=2, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3, seed=3, augment=True)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def finished_run(tiny_chairs, tmp_path_factory) -> Path:
    """A finished 2-epoch run on folder data, logging every step's learning rate (steps.json)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    steps = []
    train(TINY, output=run, data_dir=tiny_chairs, on_event=lambda kind, info: steps.append(info) if kind == "step" else None)
    (run.parent / "steps.json").write_text(json.dumps(steps))
    return run


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_every_preset_is_offered_by_the_cli_and_its_crop_fits_its_scenes():
    from flowcli.cli.common import Preset

    assert {p.value for p in Preset} == set(PRESETS)
    for name, config in PRESETS.items():
        assert all(side % 64 == 0 for side in config.crop), name
        assert config.crop[0] <= config.synth_size[0] and config.crop[1] <= config.synth_size[1], name


def test_training_lowers_the_loss(tmp_path):
    folder = tmp_path / "chairs"  # 64x64 pairs: the crop is the whole image, so epochs compare
    write_dataset(folder, count=16, seed=5, config=SynthConfig(height=64, width=64))
    config = TrainConfig(epochs=30, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3, seed=0,
                         augment=False, schedule="constant")
    result = train(config, output=tmp_path / "run", data_dir=folder)
    log = log_of(tmp_path / "run")
    assert [r["epoch"] for r in log] == list(range(1, 31))
    first, last = log[0]["train_loss"], sum(r["train_loss"] for r in log[-3:]) / 3
    assert last < 0.5 * first, (first, last)  # measured: 1.89 -> about 0.5
    assert result.best_val_epe == min(r["val_epe"] for r in log)
    assert (result.epoch, result.trained_epochs, result.stopped_by) == (30, 30, "epochs")
    for name in ("config.json", "split.json", "last.safetensors", "best.safetensors", "state.safetensors"):
        assert (tmp_path / "run" / name).is_file()
    assert {"train_loss", "train_epe", "val_epe", "lr", "images_per_s", "data_share"} <= set(log[0])
    assert 0.0 <= log[0]["data_share"] <= 1.0


def test_resume_matches_a_straight_run(finished_run, tiny_chairs, tmp_path):
    def stop_after_first_epoch(kind, info):
        if kind == "epoch" and info["epoch"] == 1:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(TINY, output=resumed, data_dir=tiny_chairs, on_event=stop_after_first_epoch)
    assert len(log_of(resumed)) == 1
    events = []
    result = train(output=resumed, resume=True, on_event=lambda kind, info: events.append((kind, info)))
    assert events[0][1]["start_epoch"] == 1  # the saved config (2 epochs, tiny) was reused
    assert (result.epoch, result.trained_epochs) == (2, 1)
    a, b = load_file(finished_run / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len(log_of(resumed)) == 2


def test_resuming_a_finished_run_trains_nothing_and_changes_nothing(finished_run):
    before = snapshot(finished_run)
    result = train(output=finished_run, resume=True)
    assert (result.epoch, result.epochs, result.trained_epochs, result.stopped_by) == (2, 2, 0, "epochs")
    assert result.best_val_epe == min(r["val_epe"] for r in log_of(finished_run))
    assert snapshot(finished_run) == before


def test_a_damaged_log_of_a_finished_run_is_one_error_line(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with open(run / "log.jsonl", "a") as log:
        log.write('{"epoch": 3, "val_')
    with pytest.raises(TrainingError, match=r"log.jsonl: the last line is not a JSON record"):
        train(output=run, resume=True)


def test_more_epochs_extend_a_finished_run_at_its_final_learning_rate(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    steps = []
    result = train(TINY.with_overrides(epochs=3), output=run, resume=True,
                   on_event=lambda kind, info: steps.append(info) if kind == "step" else None)
    assert (result.epoch, result.epochs, result.trained_epochs) == (3, 3, 1)
    assert [r["epoch"] for r in log_of(run)] == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3  # a later resume goes on from here
    assert steps and all(s["lr"] == pytest.approx(0.01 * TINY.lr) for s in steps)  # the one-cycle floor: 1% of lr

    def stop_at_first_step(kind, info):
        if kind == "step":
            raise KeyboardInterrupt

    again = tmp_path / "again"  # the extension is interrupted before its first epoch ends, then resumed
    shutil.copytree(finished_run, again)
    with pytest.raises(KeyboardInterrupt):
        train(TINY.with_overrides(epochs=3), output=again, resume=True, on_event=stop_at_first_step)
    train(output=again, resume=True)
    a, b = load_file(run / "last.safetensors"), load_file(again / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_extending_an_interrupted_run_stretches_what_is_left_of_the_schedule(finished_run, tiny_chairs, tmp_path):
    straight = [s["lr"] for s in json.loads((finished_run.parent / "steps.json").read_text())]
    per_epoch = len(straight) // 2

    def stop_after_first_epoch(kind, info):
        if kind == "epoch":
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(TINY, output=run, data_dir=tiny_chairs, on_event=stop_after_first_epoch)
    steps = []
    train(TINY.with_overrides(epochs=4), output=run, resume=True,
          on_event=lambda kind, info: steps.append(info["lr"]) if kind == "step" else None)
    assert len(steps) == 3 * per_epoch  # epochs 2-4
    assert steps[0] == pytest.approx(straight[per_epoch])  # no jump at the resumed step
    assert all(a > b for a, b in zip(steps, steps[1:]))  # then a slower cosine decay ...
    assert steps[per_epoch - 1] > straight[-1]
    assert steps[-1] > 0.01 * TINY.lr  # ... that reaches the floor only after the new last step


def test_a_resumed_run_keeps_its_split_when_the_folder_changes(tiny_chairs, tmp_path):
    from flowcli.training.sources import FolderSource

    data = tmp_path / "data"
    shutil.copytree(tiny_chairs, data)
    run = tmp_path / "run"
    train(TINY.with_overrides(epochs=1), output=run, data_dir=data)
    saved = json.loads((run / "split.json").read_text())["parts"]
    for i in range(17, 25):  # pairs added since: a split drawn again would put some into training
        for kind in ("img1.ppm", "img2.ppm", "flow.flo"):
            shutil.copy(data / f"00001_{kind}", data / f"{i:05d}_{kind}")
    kept = FolderSource(data, TINY, device=torch.device("cpu"), split_file=run / "split.json")
    assert {part: [s.id for s in samples] for part, samples in kept.split.items()} == saved
    drawn = FolderSource(data, TINY, device=torch.device("cpu"))
    assert {part: [s.id for s in samples] for part, samples in drawn.split.items()} != saved

    bare = tmp_path / "bare"  # a run folder that lost its split.json: drawn again, with a warning
    shutil.copytree(run, bare)
    (bare / "split.json").unlink()
    warnings = []
    train(TINY.with_overrides(epochs=2), output=bare, resume=True,
          on_event=lambda kind, info: warnings.append(info["message"]) if kind == "warning" else None)
    assert [w for w in warnings if "split.json is missing: the split is drawn again" in w]

    gone = saved["test"][0]
    (data / f"{gone}_flow.flo").unlink()
    with pytest.raises(DataError, match=f"ids are not in the dataset folder.*{gone}"):
        train(TINY.with_overrides(epochs=2), output=run, resume=True)


def test_a_run_whose_dataset_moved_resumes_from_its_new_folder(tiny_chairs, tmp_path):
    def stop_after_first_epoch(kind, info):
        if kind == "epoch":
            raise KeyboardInterrupt

    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_chairs, data)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, output=run, data_dir=data, on_event=stop_after_first_epoch)
    data.rename(tmp_path / "moved")
    with pytest.raises(TrainingError, match=f"trains on {data}, which is gone; if the dataset moved, give its new folder"):
        train(output=run, resume=True)
    assert train(output=run, resume=True, data_dir=tmp_path / "moved").epoch == 2  # its own settings, unchanged
    assert json.loads((run / "config.json").read_text())["data_dir"] == str(tmp_path / "moved")
    assert train(TINY.with_overrides(epochs=3), output=run, resume=True).epoch == 3  # no need to say it again


def test_two_new_runs_in_one_folder_at_once_the_second_is_refused_and_leaves_the_first_alone(tmp_path):
    from flowcli.training.rundir import NewRunFolder, write_run_config

    first, second = NewRunFolder(tmp_path / "run", overwrite=False), NewRunFolder(tmp_path / "run", overwrite=False)
    first.create()  # both checked the folder before either made it
    write_run_config(tmp_path / "run", TINY, None, overrides={})
    with pytest.raises(TrainingError, match="another training run started in this folder meanwhile"):
        second.create()
    second.discard()  # as train() does when setting up fails
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["seed"] == TINY.seed


def test_resume_refuses_settings_that_contradict_the_saved_run(finished_run, tiny_chairs, tmp_path):
    before = snapshot(finished_run)
    with pytest.raises(TrainingError, match=r"^lr=0.5: the run in .* was set up with lr=0.001; a resumed run keeps"):
        train(TINY.with_overrides(lr=0.5, epochs=5), output=finished_run, resume=True)
    with pytest.raises(TrainingError, match="trains on .*leave the data folder out"):
        train(output=finished_run, resume=True, data_dir=tmp_path)
    with pytest.raises(TrainingError, match="overwrite=True: a resumed run"):
        train(output=finished_run, resume=True, overwrite=True)
    assert snapshot(finished_run) == before


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no run to resume"):
        train(TINY, output=tmp_path, resume=True)


def test_a_new_run_refuses_a_folder_holding_a_run(finished_run, tiny_chairs):
    before = snapshot(finished_run)
    with pytest.raises(TrainingError, match="already holds a training run; resume=True continues it, "
                                            "overwrite=True replaces it"):
        train(TINY, output=finished_run, data_dir=tiny_chairs)
    assert snapshot(finished_run) == before


def test_overwrite_replaces_the_old_run_and_keeps_other_files(finished_run, tiny_chairs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("mine")
    result = train(TINY.with_overrides(epochs=1), output=run, data_dir=tiny_chairs, overwrite=True)
    assert result.epoch == 1 and [r["epoch"] for r in log_of(run)] == [1]  # replaced, not appended to
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 1
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "config.json", "last.safetensors",
                                                     "log.jsonl", "notes.txt", "split.json", "state.safetensors"]


def test_a_run_failing_before_its_first_checkpoint_leaves_no_folder(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no Flying Chairs pairs"):
        train(TINY, output=tmp_path / "new" / "run", data_dir=empty)
    assert not (tmp_path / "new").exists()  # nor the parent it would have made

    real = train_module.LOSSES["multiscale"]

    def nan_loss(pyramid, flow, valid):
        loss, metrics = real(pyramid, flow, valid)
        return loss * float("nan"), metrics

    monkeypatch.setitem(train_module.LOSSES, "multiscale", nan_loss)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 1; training stopped before its first checkpoint, so the run leaves no files"):
        train(TINY, output=tmp_path / "nan", data_dir=tiny_chairs)
    assert not (tmp_path / "nan").exists()
    (empty / "mine.txt").write_text("kept")  # a folder that was there before stays, with what it held
    with pytest.raises(TrainingError, match="loss became nan"):
        train(TINY, output=empty, data_dir=tiny_chairs)
    assert snapshot(empty) == {"mine.txt": b"kept"}


def test_each_step_is_reported_with_its_own_loss_though_read_a_step_late(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    real, computed = train_module.LOSSES["multiscale"], []

    def recorded(pyramid, flow, valid):
        loss, metrics = real(pyramid, flow, valid)
        computed.append((loss.item(), metrics["epe"].item()))
        return loss, metrics

    monkeypatch.setitem(train_module.LOSSES, "multiscale", recorded)
    steps = []
    config = TrainConfig(epochs=2, batch_size=4, crop=(64, 64), width=0.25, seed=0, augment=False)
    train(config, output=tmp_path / "run", data_dir=tiny_chairs,
          on_event=lambda kind, info: steps.append(info) if kind == "step" else None)
    assert [(s["epoch"], s["step"]) for s in steps] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert [(s["loss"], s["epe"]) for s in steps] == computed  # the last step of each epoch too
    for epoch, record in enumerate(log_of(tmp_path / "run"), start=1):
        losses = [s["loss"] for s in steps if s["epoch"] == epoch]
        assert record["train_loss"] == pytest.approx(sum(losses) / len(losses))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    real = train_module.LOSSES["multiscale"]
    calls = {"n": 0}

    def poisoned(pyramid, flow, valid):
        calls["n"] += 1
        loss, metrics = real(pyramid, flow, valid)
        return (loss * float("nan"), metrics) if calls["n"] > 3 else (loss, metrics)  # epoch 2

    config = TrainConfig(epochs=3, batch_size=4, crop=(64, 64), width=0.25, seed=0, augment=False)
    monkeypatch.setitem(train_module.LOSSES, "multiscale", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 1.*last good checkpoint"):
        train(config, output=tmp_path / "run", data_dir=tiny_chairs)
    weights = load_file(tmp_path / "run" / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert len(log_of(tmp_path / "run")) == 1


def test_a_nan_in_an_epochs_last_step_stops_the_run_before_it_validates(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    real, calls, validated = train_module.LOSSES["multiscale"], {"n": 0}, []

    def poisoned(pyramid, flow, valid):
        calls["n"] += 1
        loss, metrics = real(pyramid, flow, valid)
        return (loss * float("nan"), metrics) if calls["n"] == 6 else (loss, metrics)  # epoch 2, step 3 of 3

    monkeypatch.setitem(train_module.LOSSES, "multiscale", poisoned)
    monkeypatch.setattr(train_module, "validate", lambda *args, **kwargs: validated.append(1) or 1.0)
    config = TrainConfig(epochs=3, batch_size=4, crop=(64, 64), width=0.25, seed=0, augment=False)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 3.*last good checkpoint"):
        train(config, output=tmp_path / "run", data_dir=tiny_chairs)
    assert validated == [1] and len(log_of(tmp_path / "run")) == 1  # epoch 1's only


def test_bad_training_data_fails_before_any_folder_is_made(tiny_chairs, tmp_path):
    with pytest.raises(DataError, match="larger than the"):
        train(TINY.with_overrides(batch_size=64), output=tmp_path / "a", data_dir=tiny_chairs)
    with pytest.raises(DataError, match="smaller than the crop"):
        train(TINY.with_overrides(crop=(128, 128), augment=False), output=tmp_path / "c", data_dir=tiny_chairs)
    with pytest.raises(DataError, match=r"^crop=256x256: larger than the generated scenes \(192x256\)"):
        train(PRESETS["quick"].with_overrides(crop=(256, 256)), output=tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_time_budget_stops_the_run_and_more_minutes_extend_it(tiny_chairs, tmp_path):
    config = TINY.with_overrides(epochs=50, minutes=1e-4)  # 6 ms: over after the first step
    result = train(config, output=tmp_path / "run", data_dir=tiny_chairs)
    assert (result.epoch, result.stopped_by) == (1, "minutes")
    assert train(output=tmp_path / "run", resume=True).trained_epochs == 0
    extended = train(config.with_overrides(minutes=1.0, epochs=2), output=tmp_path / "run", resume=True)
    assert (extended.epoch, extended.trained_epochs, extended.stopped_by) == (2, 1, "epochs")


def test_generated_data_training_runs(tmp_path):
    config = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.25, steps_per_epoch=3,
                         synth_size=(96, 128), val_count=2)
    result = train(config, output=tmp_path / "run")
    assert result.epoch == 1 and result.val_epe > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] is None
    assert json.loads(result.to_json())["weights"] == str(tmp_path / "run" / "best.safetensors")


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


def test_a_folders_shuffle_and_the_augmenter_draw_different_streams(tiny_chairs):
    from flowcli.training.sources import SHUFFLE_STREAM, FolderSource, epoch_seed

    source = FolderSource(tiny_chairs, TINY, device=torch.device("cpu"))
    next(source.epoch(1))
    augmenter = epoch_seed(TINY.seed, 1)  # what the loop seeds rank 0's augmentation with
    # two CPU generators seeded alike would hand the augmenter the numbers that drew the order
    assert source.loader.generator.initial_seed() == epoch_seed(TINY.seed, 1, stream=SHUFFLE_STREAM) != augmenter


def test_mixed_motion_alternates_the_two_profiles_and_scenes_are_rendered_at_the_crop():
    from flowcli.data.scenes import SynthConfig
    from flowcli.data.synth import SceneGenerator
    from flowcli.training.sources import SynthSource, epoch_seed

    config = TrainConfig(batch_size=2, steps_per_epoch=4, crop=(64, 64), synth_size=(96, 128), val_count=1,
                         synth_motion="mixed", seed=3)
    source = SynthSource(config, device=torch.device("cpu"))
    batches = list(source.epoch(2))
    assert [b[0].shape[-2:] for b in batches] == [(64, 64)] * 4  # windows of a Chairs-pixel scene, drawn directly
    assert source.val[0][0].shape[-2:] == (96, 128)  # validation keeps synth_size
    scenes = SynthConfig(height=64, width=64, chairs_pixels=True)
    for index, motion in enumerate(("chairs", "wide")):  # each profile's own stream, reseeded per epoch
        expected = SceneGenerator(scenes.with_motion(motion), seed=3)  # the banks follow the run seed
        expected.reseed(epoch_seed(3, 2) + index)
        first, second = expected.batch(2), expected.batch(2)
        assert torch.equal(batches[index][0], first[0]) and torch.equal(batches[index][2], first[2])
        assert torch.equal(batches[index + 2][2], second[2])
    # with reuse the profiles still alternate step by step: chairs, wide, chairs, wide (each batch twice)
    reused = list(SynthSource(config.with_overrides(synth_reuse=2), device=torch.device("cpu")).epoch(2))
    assert reused[0] is reused[2] and reused[1] is reused[3]
    assert all(torch.equal(b[2], r[2]) for b, r in zip(batches[:2] * 2, reused))
    # resampling augmentation needs margins: the scenes are then rendered at synth_size
    assert SynthSource(config.with_overrides(geometric=True), device=torch.device("cpu")).train_size == (96, 128)


@pytest.mark.parametrize("preset", ["quick", "ship"])
def test_without_augmentation_generated_scenes_are_drawn_at_the_crop(preset):
    from flowcli.training.sources import SynthSource

    config = PRESETS[preset].with_overrides(augment=False, batch_size=2, steps_per_epoch=1, val_count=1)
    img1, _, flow, valid = next(iter(SynthSource(config, device=torch.device("cpu")).epoch(0)))
    assert img1.shape[2:] == flow.shape[2:] == valid.shape[1:] == config.crop != config.synth_size


def test_a_motion_profile_is_for_generated_data_only(tiny_chairs, tmp_path, run_cli):
    with pytest.raises(TrainingError, match="synth_motion='fast': choose chairs, wide, mixed"):
        TrainConfig(synth_motion="fast")
    config = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.25, synth_motion="wide")
    with pytest.raises(DataError, match="a motion profile is for generated data"):
        train(config, output=tmp_path / "run", data_dir=tiny_chairs)
    assert not (tmp_path / "run").exists()
    for motion in ("wide", "chairs"):  # even the default, when asked for by name
        result = run_cli("train", tiny_chairs, "--motion", motion, "-o", tmp_path / "cli")
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert f"--motion {motion}: for generated data; {tiny_chairs} has its own motions" in result.stderr
        assert not (tmp_path / "cli").exists()
    result = run_cli("train", tiny_chairs, "--steps-per-epoch", 5, "-o", tmp_path / "cli")  # it would be ignored
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"--steps-per-epoch 5: for generated data; an epoch of {tiny_chairs} is one pass" in result.stderr
    assert not (tmp_path / "cli").exists()


def test_compile_wraps_the_training_steps_network_and_a_resumed_run_may_turn_it_on_and_off(tmp_path, monkeypatch):
    from flowcli.data import render
    from flowcli.device import check_compile_toolchain

    try:
        check_compile_toolchain(torch.device("cpu"))  # train() checks it even with the stand-in below
    except DeviceError as error:
        pytest.skip(str(error))
    compiled = []
    monkeypatch.setattr(render, "_compiled", [])  # the stand-in below must not stay in the kernels' cache

    def fake_compile(module, **options):  # torch.compile itself takes ~30 s on this CPU: checked by hand, not here
        if isinstance(module, torch.nn.Module):  # the generator's kernels: tests/test_render.py
            compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    config = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.25, steps_per_epoch=2,
                         synth_size=(64, 96), val_count=1)
    train(config, output=tmp_path / "run")
    assert compiled == []
    from flowcli.training.config import resolve_config

    resumed = resolve_config(resume=tmp_path / "run", epochs=2, compile=True)
    result = train(resumed, output=tmp_path / "run", resume=True)
    assert result.epoch == 2 and len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    resumed = resolve_config(resume=tmp_path / "run", epochs=3, compile=False)  # and off again
    assert train(resumed, output=tmp_path / "run", resume=True).epoch == 3 and len(compiled) == 1


def test_init_starts_from_the_given_weights(tiny_chairs, tmp_path):
    from dataclasses import replace

    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    torch.manual_seed(11)
    start = FlowNetS(ModelConfig(width=0.25))
    save_weights(tmp_path / "start.safetensors", start)
    config = TINY.with_overrides(epochs=1, schedule="constant", init=str(tmp_path / "start.safetensors"))
    steps = []
    train(config, output=tmp_path / "run", data_dir=tiny_chairs, on_event=lambda kind, info: steps.append(kind == "step"))
    after = load_file(str(tmp_path / "run" / "last.safetensors"))
    moved = max((after[k] - v).abs().max().item() for k, v in start.state_dict().items())
    assert 0 < moved <= 2 * sum(steps) * config.lr  # an Adam step moves a weight by about lr at most
    train(replace(config, init=None), output=tmp_path / "fresh", data_dir=tiny_chairs)
    other = load_file(str(tmp_path / "fresh" / "last.safetensors"))
    assert (other["conv1.0.weight"] - after["conv1.0.weight"]).abs().max() > 10 * sum(steps) * config.lr


def test_freeze_bn_keeps_batchnorm_statistics_and_trains_the_rest(tiny_chairs, tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.model import FlowNetS, ModelConfig

    torch.manual_seed(12)
    start = FlowNetS(ModelConfig(width=0.25, batch_norm=True))
    save_weights(tmp_path / "start.safetensors", start)
    config = TINY.with_overrides(batch_norm=True, init=str(tmp_path / "start.safetensors"))
    runs = {}
    for freeze in (True, False):
        train(config.with_overrides(freeze_bn=freeze), output=tmp_path / str(freeze), data_dir=tiny_chairs)
        runs[freeze] = load_file(str(tmp_path / str(freeze) / "last.safetensors"))
    stats = [k for k in runs[True] if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in start.modules()) > 0
    before = start.state_dict()
    assert all(torch.equal(runs[True][k], before[k]) for k in stats)  # two epochs, a validation between
    assert not all(torch.equal(runs[False][k], before[k]) for k in stats)
    assert not torch.equal(runs[True]["conv1.0.weight"], before["conv1.0.weight"])


def test_validation_weighs_each_valid_pixel_as_eval_does():
    from flowcli.model import FlowNetS, ModelConfig
    from flowcli.training.loop import validate

    model = FlowNetS(ModelConfig(width=0.25)).eval()
    g = torch.Generator().manual_seed(0)
    pairs = [(torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g),
              torch.randn(1, 2, 64, 64, generator=g) * 5, valid) for valid in
             (torch.ones(1, 64, 64, dtype=torch.bool), torch.arange(64 * 64).reshape(1, 64, 64) < 64 * 8)]
    errors = []
    for img1, img2, flow, valid in pairs:  # KITTI-like: the second pair knows one eighth of its pixels
        with torch.no_grad():
            pred = model(img1, img2).numpy()
        errors.append(np.linalg.norm(pred - flow.numpy(), axis=1)[valid.numpy()])
    expected = np.concatenate(errors).mean()  # not the mean of the two pairs' means
    assert abs(expected - np.mean([e.mean() for e in errors])) > 1e-3
    assert validate(model, type("Source", (), {"validation": lambda self: pairs})()) == pytest.approx(expected, rel=1e-5)
    unknown = [(img1, img2, flow, torch.zeros_like(valid)) for img1, img2, flow, valid in pairs]
    assert math.isnan(validate(model, type("Source", (), {"validation": lambda self: unknown})()))


def test_a_run_without_a_validation_figure_keeps_its_latest_weights_as_best(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    monkeypatch.setattr(train_module, "validate", lambda *a, **k: float("nan"))  # no pixel of known flow
    result = train(TINY.with_overrides(epochs=2), output=tmp_path / "run", data_dir=tiny_chairs)
    best, last = load_file(tmp_path / "run" / "best.safetensors"), load_file(tmp_path / "run" / "last.safetensors")
    assert result.weights == str(tmp_path / "run" / "best.safetensors") and all(torch.equal(best[k], last[k]) for k in last)


def test_a_failed_validation_after_a_good_one_keeps_the_good_weights_as_best(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module
    from flowcli.checkpoint import read_metadata

    figures = iter([2.0, float("nan")])  # epoch 2's forward went non-finite
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: next(figures))
    result = train(TINY.with_overrides(epochs=2), output=tmp_path / "run", data_dir=tiny_chairs)
    best, last = (read_metadata(tmp_path / "run" / f"{name}.safetensors") for name in ("best", "last"))
    assert (best["epoch"], best["val_epe"], last["epoch"]) == ("1", "2.0000", "2")
    assert result.best_val_epe == 2.0


def test_a_budget_spent_while_validating_the_last_epoch_still_finished_its_epochs(tiny_chairs, tmp_path, monkeypatch):
    import flowcli.training.loop as train_module
    from flowcli.training.schedule import CheckIn

    real = train_module.check_in

    def spent_after_validation(budget_s, *args, step=None, **kwargs):
        checked = real(budget_s, *args, step=step, **kwargs)
        return CheckIn(True, checked.failed, checked.elapsed_s) if step is None and budget_s else checked

    monkeypatch.setattr(train_module, "check_in", spent_after_validation)
    config = TINY.with_overrides(epochs=1, minutes=60.0)
    assert train(config, output=tmp_path / "one", data_dir=tiny_chairs).stopped_by == "epochs"
    cut = train(config.with_overrides(epochs=2), output=tmp_path / "two", data_dir=tiny_chairs)
    assert (cut.stopped_by, cut.epoch) == ("minutes", 1)


def test_validation_predicts_frames_under_64_px_as_eval_does():
    from flowcli.inference.engine import Predictor
    from flowcli.model import FlowNetS, ModelConfig
    from flowcli.training.loop import validate

    model = FlowNetS(ModelConfig(width=0.25)).eval()
    g = torch.Generator().manual_seed(1)
    img1, img2 = torch.rand(1, 3, 48, 56, generator=g), torch.rand(1, 3, 48, 56, generator=g)
    flow = torch.randn(1, 2, 48, 56, generator=g)
    pred = Predictor(model, device="cpu", refine=0, smooth=False)(img1, img2)  # eval's network alone
    expected = torch.linalg.vector_norm(pred - flow, dim=1).mean().item()
    data = [(img1, img2, flow, torch.ones(1, 48, 56, dtype=torch.bool))]
    assert validate(model, type("Source", (), {"validation": lambda self: data})()) == pytest.approx(expected, rel=1e-4)


def test_validation_leaves_each_layer_in_its_mode():
    from flowcli.model import FlowNetS, ModelConfig
    from flowcli.training.loop import validate
    from flowcli.training.setup import set_train_mode

    model = FlowNetS(ModelConfig(width=0.25, batch_norm=True))
    set_train_mode(model, freeze_bn=True)
    modes = [m.training for m in model.modules()]
    assert True in modes and False in modes
    data = [(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.zeros(1, 2, 64, 64), torch.ones(1, 64, 64))]
    validate(model, type("Source", (), {"validation": lambda self: data})())
    assert [m.training for m in model.modules()] == modes


# -- DistributedDataParallel ------------------------------------------------------------------------

DDP_CONFIG = TrainConfig(epochs=2, batch_size=2, crop=(64, 64), width=0.25, lr=1e-3, seed=4, amp=False,
                         augment=False, val_count=1)


class NoiseSource:
    """A cheap stand-in for the training data: each rank's batches are seeded by (epoch, rank, step);
    given several ranks, one process sees their batches concatenated, as DDP combines them."""

    steps_per_epoch = 2
    incomplete: list[str] = []

    def __init__(self, ranks: list[int]):
        self.ranks = ranks

    @staticmethod
    def batch(epoch: int, rank: int, step: int):
        g = torch.Generator().manual_seed(1000 * epoch + 100 * rank + step)
        img1 = torch.rand(2, 3, 64, 64, generator=g)
        flow = torch.randn(2, 2, 64, 64, generator=g)
        return img1, torch.roll(img1, (1, 2), dims=(2, 3)), flow, torch.ones(2, 64, 64, dtype=torch.bool)

    def epoch(self, epoch: int):
        for step in range(self.steps_per_epoch):
            parts = [self.batch(epoch, rank, step) for rank in self.ranks]
            yield tuple(torch.cat(tensors) for tensors in zip(*parts))

    def validation(self):
        yield self.batch(99, 0, 0)


DDP_WORKER = """
import os, sys
sys.path.insert(0, sys.argv[3])
from safetensors.torch import save_file
import test_train
from flowcli.training import loop

models = []
make_optimizer = loop.make_optimizer
loop.make_optimizer = lambda model, config: models.append(model) or make_optimizer(model, config)
loop.make_source = lambda config, data_dir, device, rank, world, strict, **kw: test_train.NoiseSource([rank])
loop.train(test_train.DDP_CONFIG, output=sys.argv[1])
state = {k: v.contiguous() for k, v in models[0].state_dict().items()}
save_file(state, os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.safetensors"))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(worker: str, *args) -> list[subprocess.Popen]:
    """Two gloo ranks running `worker` (python -c) with `args`, on a free port."""
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", worker, *map(str, args)],
                             env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE, text=True)
            for r in (0, 1)]


def finish_ranks(ranks: list[subprocess.Popen]) -> list[str]:
    """Each rank's stderr once it has ended; a rank still running after two minutes is killed (a hang)."""
    try:
        return [rank.communicate(timeout=120)[1] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()


def test_ddp_on_two_gloo_ranks_equals_one_process_on_the_combined_batch(tmp_path, monkeypatch):
    import flowcli.training.loop as train_module

    ranks = start_ranks(DDP_WORKER, tmp_path / "ddp", tmp_path, TESTS)
    monkeypatch.setattr(train_module, "make_source", lambda *args, **kw: NoiseSource([0, 1]))
    train(DDP_CONFIG, output=tmp_path / "single")  # meanwhile: one process, both ranks' batches at once
    errors = finish_ranks(ranks)
    assert [rank.returncode for rank in ranks] == [0, 0], [e[-2000:] for e in errors]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    single = load_file(tmp_path / "single" / "last.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # gradients averaged: the ranks never diverge
    for key, value in single.items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert [r["epoch"] for r in log_of(tmp_path / "ddp")] == [1, 2]  # one writer, one line per epoch


class LateSource(NoiseSource):
    """NoiseSource whose rank 1 hands each batch over 50 ms late: its clock reads later than rank 0's
    whenever the learning rate is set. Epochs long enough for the ranks to talk within them."""

    steps_per_epoch = 16

    def epoch(self, epoch: int):
        for batch in super().epoch(epoch):
            if self.ranks == [1]:
                time.sleep(0.05)
            yield batch


DDP_TIMED_WORKER = """
import json, os, sys
sys.path.insert(0, sys.argv[2])
import test_train
from flowcli.training import loop

loop.make_source = lambda config, data_dir, device, rank, world, strict, **kw: test_train.LateSource([rank])
rates = []
config = test_train.DDP_CONFIG.with_overrides(epochs=1000, minutes=0.06)  # the clock drives the schedule
loop.train(config, output=sys.argv[1], on_event=lambda kind, info: rates.append(info["lr"]) if kind == "step" else None)
with open(os.path.join(sys.argv[3], f"rates{os.environ['RANK']}.json"), "w") as f:
    json.dump(rates, f)
"""


def test_ddp_ranks_set_the_same_learning_rate_when_the_time_budget_drives_the_schedule(tmp_path):
    ranks = start_ranks(DDP_TIMED_WORKER, tmp_path / "ddp", TESTS, tmp_path)
    errors = finish_ranks(ranks)
    assert [rank.returncode for rank in ranks] == [0, 0], errors
    rates = [json.loads((tmp_path / f"rates{r}.json").read_text()) for r in (0, 1)]
    assert rates[0] == rates[1] and len(set(rates[0])) >= 3  # the same rate at every step, and it changed


DDP_CLAIM_WORKER = """
import os, sys
sys.path.insert(0, sys.argv[2])
import test_train
from flowcli.cli import app
from flowcli.errors import TrainingError
from flowcli.training import loop, rundir

def refused(self):
    raise TrainingError(f"{self.path}: another training run started in this folder meanwhile")

if os.environ["RANK"] == "0":
    rundir.NewRunFolder.create = refused
loop.make_source = lambda config, data_dir, device, rank, world, strict, **kw: test_train.NoiseSource([rank])
app(["train", "--epochs", "1", "--batch-size", "2", "--crop", "64x64", "--width", "0.25", "--no-augment",
     "-o", sys.argv[1]])
"""


def test_when_rank_0_cannot_make_the_run_folder_every_rank_stops(tmp_path):
    ranks = start_ranks(DDP_CLAIM_WORKER, tmp_path / "ddp", TESTS)
    errors = finish_ranks(ranks)  # before, rank 1 went on training alone
    assert [rank.returncode for rank in ranks] == [1, 1], errors
    assert [e.count("error:") for e in errors] == [1, 1] and "Traceback" not in "".join(errors)
    assert "another training run started in this folder meanwhile" in errors[0]
    assert "another rank could not set up the run (its error says why)" in errors[1]


class PoisonedSource(NoiseSource):
    """NoiseSource whose rank 1 gets a NaN flow in epoch 2's last step: that rank's loss is NaN, rank 0's not."""

    @staticmethod
    def batch(epoch: int, rank: int, step: int):
        img1, img2, flow, valid = NoiseSource.batch(epoch, rank, step)
        return img1, img2, flow * float("nan") if (epoch, rank, step) == (1, 1, 1) else flow, valid


DDP_NAN_WORKER = """
import sys
sys.path.insert(0, sys.argv[2])
import test_train
from flowcli.cli import app
from flowcli.training import loop

loop.make_source = lambda config, data_dir, device, rank, world, strict, **kw: test_train.PoisonedSource([rank])
app(["train", "--epochs", "2", "--batch-size", "2", "--crop", "64x64", "--width", "0.25", "--no-augment",
     "-o", sys.argv[1]])
"""


def test_a_nan_loss_on_one_ddp_rank_stops_every_rank_before_the_next_checkpoint(tmp_path):
    ranks = start_ranks(DDP_NAN_WORKER, tmp_path / "ddp", TESTS)
    errors = finish_ranks(ranks)  # before the fix rank 0 waited for rank 1 in the epoch's barrier, for gloo's 30 minutes
    assert [rank.returncode for rank in ranks] == [1, 1], errors
    assert [e.count("error:") for e in errors] == [1, 1] and "Traceback" not in "".join(errors)
    kept = f"training stopped, last good checkpoint kept in {tmp_path / 'ddp' / 'last.safetensors'}"
    assert f"a loss became non-finite on another rank by epoch 2, step 2; {kept}" in errors[0]
    assert f"loss became nan at epoch 2, step 2; {kept}" in errors[1]
    assert [r["epoch"] for r in log_of(tmp_path / "ddp")] == [1]  # epoch 2's NaN weights were never saved


def test_a_folder_too_small_to_leave_a_validation_pair_is_refused(tmp_path, run_cli):
    write_dataset(tmp_path / "two", count=2, seed=1, config=SynthConfig(height=64, width=64))
    config = TrainConfig(epochs=1, batch_size=1, crop=(64, 64), width=0.25)
    with pytest.raises(DataError, match=r"2 pairs leave no validation pair .*\(train 2, val 0, test 0\)"):
        train(config, output=tmp_path / "run", data_dir=tmp_path / "two")
    result = run_cli("train", tmp_path / "two", "--crop", "64x64", "-o", tmp_path / "cli")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "no validation pair" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "cli").exists()

