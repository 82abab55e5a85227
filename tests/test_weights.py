"""The shipped default weights: present, small, self-describing, and clearly better than zero flow."""

from __future__ import annotations

import json

import pytest
import torch

from flowcli.checkpoint import DEFAULT_WEIGHTS, load_model, metadata_json
from flowcli.training.config import PRESETS, TrainConfig
from flowcli.inference.evaluate import generated_batches
from flowcli.inference.engine import Predictor

MAX_BYTES = 20 * 2**20


def test_default_weights_exist_are_small_and_carry_their_architecture():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size <= MAX_BYTES
    meta = metadata_json(DEFAULT_WEIGHTS)
    assert meta["config"] == {"batch_norm": True, "flow_scale": 20.0, "width": 0.25}
    assert meta["train_config"]["crop"] == [320, 448] and "val_epe" in meta  # the gpu preset
    model = load_model()  # no argument: the default weights
    assert sum(p.numel() for p in model.parameters()) == 2_437_360  # width 0.25 + BatchNorm


def test_default_weights_record_the_recipe_the_model_card_gives():
    # weights/README.md, last stage: flowcli train --preset gpu --init weights/flownets.safetensors --device cpu
    #     --lr 1e-4 --minutes 85 --workers 0 --seed 8 --freeze-bn
    recorded = TrainConfig.from_json(json.dumps(metadata_json(DEFAULT_WEIGHTS)["train_config"]))
    assert recorded == PRESETS["gpu"].with_overrides(lr=1e-4, minutes=85.0, num_workers=0, seed=8, freeze_bn=True,
                                                     init="weights/flownets.safetensors")


def test_default_weights_beat_zero_flow_on_seeded_generated_pairs_and_each_inference_step_helps():
    model = load_model()
    cpu = torch.device("cpu")
    predictors = {"default": Predictor(model, device=cpu),
                  "unrefined": Predictor(model, device=cpu, refine=0),
                  "network alone": Predictor(model, device=cpu, smooth=False, refine=0),
                  "two passes": Predictor(model, device=cpu, passes=2)}
    err = dict.fromkeys([*predictors, "zero"], 0.0)
    for _, img1, img2, flow, _ in generated_batches(4, (192, 256), "cpu"):
        for name, predictor in predictors.items():
            err[name] += torch.linalg.vector_norm(predictor(img1, img2) - flow, dim=1).mean().item() / 4
        err["zero"] += torch.linalg.vector_norm(flow, dim=1).mean().item() / 4
    # measured once (torch 2.13 CPU): zero flow 7.320, shipped weights 2.202 with the defaults,
    # 2.470 without the refinement step, 2.513 the network alone, 2.094 with --passes 2; margins for other builds
    assert err["zero"] == pytest.approx(7.320, abs=1e-2)
    assert err["default"] < 2.5
    assert err["default"] < err["unrefined"] - 0.15
    assert err["unrefined"] < err["network alone"] - 0.02
    assert err["two passes"] < err["default"] - 0.08


def test_shipped_weights_on_the_real_flying_chairs_pair(run_cli, shared_fixtures, tmp_path):
    """The real pair is 50x50, under FlowNetS's 64 px: eval upsamples it x2 and scales the flow back."""
    epe, in_frame = {}, {}
    for name, options in (("default", []), ("unrefined", ["--refine", "0"]), ("hflip", ["--tta", "hflip"]),
                          ("all three", ["--passes", "2", "--tta", "hflip", "--refine", "2"])):
        out = tmp_path / "eval.json"
        result = run_cli("eval", shared_fixtures, "--split", "all", *options, "--json", out)
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["pairs"] == 1 and report["samples"][0]["valid_pixels"] == 50 * 50
        epe[name], in_frame[name] = report["epe"], report["in-frame"]
    assert report["out_of_frame_share"] == pytest.approx(202 / 2500)  # a chair's corner leaves at the top left
    # measured once (torch 2.13 CPU): 0.784, 0.904, 0.586 and 0.563; zero flow 1.783, OpenCV DIS (medium) 0.898;
    # in frame 0.377 with the defaults (DIS 0.523)
    assert epe["default"] == pytest.approx(0.784, abs=0.05)
    assert in_frame["default"] == pytest.approx(0.377, abs=0.05)
    assert epe["default"] < epe["unrefined"] - 0.08
    assert epe["default"] < 0.898  # OpenCV DIS (medium) on this pair, benchmarks/classical.py
    assert epe["hflip"] < 0.7 and epe["all three"] < 0.7
