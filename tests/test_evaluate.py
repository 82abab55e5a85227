"""Evaluation: EPE equals a hand computation on saved predictions; unknown flow and bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowcli.errors import DataError
from flowcli.inference.evaluate import evaluate
from flowcli.io import read_flo, write_flo
from flowcli.inference.engine import load_predictor
from flowcli.inference.predict import estimate_flow
from flowcli.data.scenes import SynthConfig
from flowcli.data.synth import write_dataset


@pytest.fixture()
def folder(tmp_path):
    write_dataset(tmp_path / "chairs", count=4, seed=2, config=SynthConfig(height=64, width=96))
    return tmp_path / "chairs"


def test_eval_epe_equals_hand_computation_on_saved_predictions(folder, tmp_path):
    gt = read_flo(folder / "00002_flow.flo")
    gt[:5, :7] = 1e10  # unknown flow: must be masked and counted, never averaged
    write_flo(folder / "00002_flow.flo", gt)
    result = evaluate(folder, split="all", weights="random")
    assert (result.scene_seed, result.motion) == (None, None)  # a folder's scenes are its own

    predictor = load_predictor("random")
    errors, speeds, outside, hits = [], [], [], 0
    for i in range(1, 5):
        pred = estimate_flow(folder / f"{i:05d}_img1.ppm", folder / f"{i:05d}_img2.ppm", predictor=predictor)
        write_flo(tmp_path / f"{i}.flo", pred)  # saved, then read back: what a user would compare
        truth = read_flo(folder / f"{i:05d}_flow.flo").astype(np.float64)
        saved = read_flo(tmp_path / f"{i}.flo").astype(np.float64)
        valid = np.all(np.abs(truth) < 1e9, axis=2)
        err = np.sqrt(((truth - saved) ** 2).sum(axis=2))[valid]
        errors.append(err)
        speeds.append(np.sqrt((truth**2).sum(axis=2))[valid])
        ys, xs = np.mgrid[:64, :96]
        x, y = xs + truth[..., 0], ys + truth[..., 1]
        outside.append(((x < 0) | (x > 95) | (y < 0) | (y > 63))[valid])
        hits += int((err < 3).sum())
    errors, speeds, outside = np.concatenate(errors), np.concatenate(speeds), np.concatenate(outside)
    assert result.pairs == 4 and result.invalid_pixels == 35
    assert result.epe == pytest.approx(errors.mean(), rel=1e-5)
    assert result.within["3px"] == pytest.approx(hits / errors.size, rel=1e-6)
    slow = speeds < 10
    assert 0 < slow.sum() < slow.size  # both bands present in these scenes
    assert result.epe_by_speed["s0-10"] == pytest.approx(errors[slow].mean(), rel=1e-5)
    assert result.epe_by_speed["s10-40"] == pytest.approx(errors[~slow & (speeds < 40)].mean(), rel=1e-5)
    assert 0 < outside.sum() < outside.size  # some pixels move out of the frame
    assert result.out_of_frame_share == pytest.approx(outside.mean())
    assert result.epe_by_frame["out-of-frame"] == pytest.approx(errors[outside].mean(), rel=1e-5)
    assert result.epe_by_frame["in-frame"] == pytest.approx(errors[~outside].mean(), rel=1e-5)
    assert [s.id for s in result.samples] == ["00001", "00002", "00003", "00004"]
    assert result.samples[1].valid_pixels == 64 * 96 - 35
    assert result.ms_per_image > 0


def test_generated_test_set_is_fixed(tmp_path):
    a = evaluate(count=2, size=(64, 96), weights="random")
    b = evaluate(count=2, size=(64, 96), weights="random")
    assert a.pairs == 2 and a.epe == b.epe > 0
    assert "generated test set" in a.source


def test_other_generated_scenes_by_motion_profile_and_seed(folder, run_cli):
    from flowcli.data.scenes import SynthConfig
    from flowcli.data.synth import SceneGenerator
    from flowcli.inference.evaluate import generated_batches

    scenes = SceneGenerator(SynthConfig(height=64, width=96).with_motion("wide"), seed=5)
    expected = torch.cat([scenes.batch(1)[2], scenes.batch(1)[2]])  # the test set draws one scene at a time
    got = [flow for _, _, _, flow, _ in generated_batches(2, (64, 96), "cpu", motion="wide", seed=5)]
    assert torch.equal(torch.cat(got), expected)
    result = evaluate(count=2, size=(64, 96), weights="random", motion="wide", scene_seed=5)
    assert "seed 5, wide motion" in result.source
    assert json.loads(result.to_json())["scene_seed"] == 5 and result.motion == "wide"
    assert result.epe != evaluate(count=2, size=(64, 96), weights="random").epe
    for given, named in ((["--scene-seed", "99"], "--scene-seed:"), (["--motion", "chairs"], "--motion:"),
                         (["--motion", "wide", "--scene-seed", "5"], "--motion and --scene-seed:"),
                         (["--count", "64"], "--count:")):  # even at its default: it would be ignored
        result = run_cli("eval", folder, "--split", "all", "--weights", "random", *given)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert f"{named} for the generated test set; {folder} has its own pairs" in result.stderr
    # the other way round: a folder's options without one would be silently ignored
    for given, named in ((["--seed", "99"], "--seed:"), (["--split", "all", "--layout", "chairs"], "--split and --layout:")):
        result = run_cli("eval", *given, "--weights", "random", "--count", "1")
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert f"{named} for a folder (DATA_DIR); the generated test set has no split (other generated scenes: " \
               "--scene-seed)" in result.stderr
    with pytest.raises(DataError, match=r"scene_seed=99 choose generated test scenes") as refused:
        evaluate(folder, split="all", weights="random", scene_seed=99)
    assert "motion" not in str(refused.value)  # names only what differs from the test set


def test_eval_cli_reports_incomplete_triplets_and_strict_refuses(folder, run_cli):
    (folder / "00003_flow.flo").unlink()
    result = run_cli("eval", folder, "--split", "all", "--weights", "random", "--metric", "epe")
    assert result.exit_code == 0, result.output
    assert "00003: missing 00003_flow.flo" in result.stderr
    assert "EPE" in result.stdout and "< 3px" not in result.stdout and "out-of-frame" not in result.stdout
    result = run_cli("eval", folder, "--split", "all", "--weights", "random", "--strict")
    assert result.exit_code == 1 and "00003" in result.stderr and "Traceback" not in result.stderr


def test_eval_flo_of_another_size_is_one_clear_error(folder, run_cli):
    write_flo(folder / "00001_flow.flo", np.zeros((32, 32, 2), np.float32))
    with pytest.raises(DataError, match="00001_flow.flo"):
        evaluate(folder, split="all", weights="random")
    result = run_cli("eval", folder, "--split", "all", "--weights", "random")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "00001_flow.flo" in result.stderr


def test_eval_cli_tta_passes_and_refine_are_reported_and_change_the_prediction(folder, run_cli, tmp_path):
    plain = evaluate(folder, split="all", weights="random")
    result = run_cli("eval", folder, "--split", "all", "--weights", "random", "--tta", "hflip", "--passes", "2",
                     "--refine", "2", "--json", tmp_path / "tta.json")
    assert result.exit_code == 0, result.output
    assert "tta hflip, passes 2, refine 2" in result.stdout
    saved = json.loads((tmp_path / "tta.json").read_text())
    assert 0 < saved["out_of_frame_share"] < 1
    shown = " ".join(result.stdout.split())  # the table may wrap
    assert f"EPE out-of-frame ({100 * saved['out_of_frame_share']:.1f}% of pixels)" in shown
    assert (saved["options"]["tta"], saved["options"]["passes"], saved["options"]["refine"]) == ("hflip", 2, 2)
    assert (plain.options.tta, plain.options.passes, plain.options.refine) == ("none", 1, 1)  # one refinement step by default
    assert saved["epe"] != pytest.approx(plain.epe, rel=1e-4)
    assert run_cli("eval", folder, "--weights", "random", "--tta", "sideways").exit_code == 2
    assert run_cli("eval", folder, "--weights", "random", "--refine", "-1").exit_code == 2
    assert run_cli("eval", folder, "--weights", "random", "--passes", "0").exit_code == 2


def test_eval_split_and_part_mean_the_same_as_in_train(folder, run_cli):
    """--split is the scheme in every command; --part picks train/val/test; unknown values list the choices."""
    result = run_cli("eval", folder, "--split", "reference", "--part", "train", "--weights", "random", "--metric", "epe")
    assert result.exit_code == 0, result.output
    assert "reference split, train" in " ".join(result.stdout.split())
    result = run_cli("eval", folder, "--split", "nonsense", "--weights", "random")
    assert result.exit_code == 2 and "reference" in result.output and "all" in result.output


def test_eval_small_folder_without_a_test_part_suggests_split_all(tmp_path, run_cli):
    write_dataset(tmp_path / "two", count=2, seed=1, config=SynthConfig(height=64, width=64))
    with pytest.raises(DataError, match="split=all evaluates every pair"):
        evaluate(tmp_path / "two", split="seeded", weights="random")
    result = run_cli("eval", tmp_path / "two", "--split", "seeded", "--weights", "random")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "--split all evaluates every pair" in result.stderr


def test_eval_json_to_a_missing_folder_fails_before_the_work(folder, run_cli, tmp_path):
    result = run_cli("eval", folder, "--split", "all", "--weights", "random", "--json", tmp_path / "no" / "r.json")
    assert result.exit_code == 1 and "does not exist" in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""  # the error comes before the work, not after the table


def test_a_shipped_network_by_name_never_takes_the_split_file_of_the_current_folder(tiny_chairs, tmp_path,
                                                                                    monkeypatch):
    from flowcli.inference.evaluate import folder_pairs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "split.json").write_text('{"train": ["nope"], "val": [], "test": ["nope"]}')  # ids not in the folder
    chosen = {name: folder_pairs(tiny_chairs, split="auto", part="test", seed=0, weights=name)[0]
              for name in (None, "accurate", "fast")}
    assert [s.id for s in chosen["accurate"]] == [s.id for s in chosen["fast"]] == [s.id for s in chosen[None]]
    # a weights file's own folder still lends its split
    with pytest.raises(DataError, match="nope"):
        folder_pairs(tiny_chairs, split="auto", part="test", seed=0, weights=tmp_path / "best.safetensors")


def test_a_runs_split_is_reused_only_for_the_folder_it_was_made_for(tiny_chairs, tmp_path):
    import shutil

    from flowcli.data.folders import find_samples
    from flowcli.data.splits import save_split
    from flowcli.inference.evaluate import folder_pairs

    samples, _ = find_samples(tiny_chairs)
    run = tmp_path / "run"
    run.mkdir()
    save_split(run / "split.json", {"train": samples[8:], "val": samples[:5], "test": samples[5:8]}, tiny_chairs)
    ids = lambda folder, weights: [s.id for s in folder_pairs(folder, split="auto", part="test", seed=0,  # noqa: E731
                                                              weights=weights)[0]]
    assert ids(tiny_chairs, run / "best.safetensors") == [s.id for s in samples[5:8]]
    moved = tmp_path / "moved"  # the same dataset on another machine: its ids are all there
    shutil.copytree(tiny_chairs, moved)
    assert ids(moved, run / "best.safetensors") == [s.id for s in samples[5:8]]
    other = tmp_path / "another_dataset"  # another dataset (a different id among them): its own split
    shutil.copytree(tiny_chairs, other)
    for path in other.glob(f"{samples[9].id}_*"):
        path.rename(other / path.name.replace(samples[9].id, "x"))
    assert ids(other, run / "best.safetensors") == ids(other, None) != [s.id for s in samples[5:8]]


def test_with_cuda_graphs_each_new_size_is_warmed_up_before_it_is_timed(tmp_path, monkeypatch):
    import shutil

    import flowcli.inference.engine as engine

    write_dataset(tmp_path / "mixed", count=2, seed=2, config=SynthConfig(height=64, width=96))
    write_dataset(tmp_path / "wide", count=2, seed=3, config=SynthConfig(height=64, width=128))
    for old, new in ((1, 3), (2, 4)):  # KITTI-like: a folder whose frames change size
        for part in ("img1.ppm", "img2.ppm", "flow.flo"):
            shutil.copy(tmp_path / "wide" / f"{old:05d}_{part}", tmp_path / "mixed" / f"{new:05d}_{part}")
    real, widths = load_predictor("random"), []

    class Capturing:  # a CUDA predictor's first call of a size captures a graph: not what eval should time
        cuda_graphs = True

        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, img1, img2):
            widths.append(img1.shape[-1])
            return real(img1, img2)

    monkeypatch.setattr(engine, "load_predictor", lambda *a, **k: Capturing())
    result = evaluate(tmp_path / "mixed", split="all", warmup=0)
    assert result.pairs == 4
    assert widths == [96, 96, 96, 128, 128, 128]  # one untimed call before each size's first timed one


def test_eval_and_bench_name_the_weights_they_ran_alike(tmp_path):
    """The default by its shipped name (eval once said "default", bench the file's full path), a file
    as given."""
    from flowcli.checkpoint import SHIPPED, load_model, save_weights
    from flowcli.inference.bench import run_bench

    small = dict(count=1, size=(64, 64), warmup=0)
    assert evaluate(device="cpu", **small).weights == "fast"
    assert run_bench(device="cpu", size=(64, 64), runs=1, warmup=0).weights == "fast"
    assert evaluate(weights="accurate", device="cpu", **small).weights == "accurate"
    mine = tmp_path / "mine.safetensors"
    save_weights(mine, load_model(SHIPPED["fast"]))
    assert evaluate(weights=mine, device="cpu", **small).weights == str(mine)
    assert run_bench(weights=str(mine), device="cpu", size=(64, 64), runs=1, warmup=0).weights == str(mine)
