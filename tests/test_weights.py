"""The shipped weights (the default "fast" network and the wide "accurate" one): present, small,
self-describing, and pinned by regression anchors.

The EPE anchors below were measured on this repository's 2-core CPU machine (torch 2.13 CPU, fp32,
2 threads) with the shipped weights. They are regression anchors, not targets: any change to the
weights, the network code, the inference steps or the test-scene generator that moves an EPE by
more than the margin, in either direction, fails here; re-measure and update the anchor (and the
model card) when the change is intended.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from safetensors import safe_open

from flowcli.checkpoint import DEFAULT_WEIGHTS, SHIPPED, load_model, metadata_json
from flowcli.training.config import PRESETS, TrainConfig
from flowcli.inference.evaluate import generated_batches
from flowcli.inference.engine import Predictor
from flowcli.io import read_flo, read_image
from flowcli.metrics import EpeTally

MAX_BYTES = 20 * 2**20

# Margins, two-sided and relative. Legitimate spread, measured: 1 vs 2 threads, the network in fp64, and
# noise of 1e-4 x each tensor's std on every weight (far beyond fp32 rounding differences between CPUs)
# moved the generated-pair EPEs by <= 2e-5 and the 50x50 real pair's by <= 0.4 % (the refinement's and
# --passes' accept-if-better gates flip on near-ties, and one pixel there weighs 1/2500).
GENERATED_REL = 0.01  # ~500x the measured spread; predict_flow2 x 0.98 (EPE without refinement +1.0 %) fails
REAL_PAIR_REL = 0.02  # 2,500 pixels: ~5x the largest spread measured there


def assert_anchor(measured: dict, anchors: dict, rel: float, what: str = "EPE") -> None:
    """Every anchor within rel of what was measured; the message names each one that is not."""
    off = {name: (round(measured[name], 4), anchor) for name, anchor in anchors.items()
           if measured[name] != pytest.approx(anchor, rel=rel)}
    assert not off, f"{what} moved beyond {rel:.0%} of its anchor (measured, anchor): {off}"


def test_default_weights_exist_are_small_and_carry_their_architecture():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size <= MAX_BYTES
    meta = metadata_json(DEFAULT_WEIGHTS)
    assert meta["config"] == {"arch": "flownets", "batch_norm": True, "flow_scale": 20.0, "subtract_mean": True,
                              "upsampler": "convex", "width": 0.25}
    assert meta["train_config"]["crop"] == [320, 448]  # the gpu preset
    # the model card: "best validation EPE 3.001 px", "3.001 (epoch 39)"
    assert meta["val_epe"] == pytest.approx(3.001, abs=1e-3) and meta["epoch"] == 39
    model = load_model()  # no argument: the default weights
    # the model card's parameter count: the paper's layers at width 0.25 (tests/test_model.py derives them
    # from the layer list) and the head (3x3 conv 50 -> 16, 1x1 conv 16 -> 144)
    assert sum(p.numel() for p in model.parameters()) == 2_437_360 + (50 * 16 * 9 + 16) + (16 * 144 + 144) == 2_447_024


def test_default_weights_record_the_recipe_the_model_card_gives():
    # weights/README.md, stage 17: flowcli train --preset gpu --init fast --upsampler convex --freeze-backbone
    #     --loss epe --lr 1e-3 --minutes 30 --workers 0 --seed 141 --compile --device cpu
    recorded = TrainConfig.from_json(json.dumps(metadata_json(DEFAULT_WEIGHTS)["train_config"]))
    assert recorded == PRESETS["gpu"].with_overrides(lr=1e-3, minutes=30.0, num_workers=0, seed=141, compile=True,
                                                     init="fast", upsampler="convex", freeze_backbone=True, loss="epe")


def test_shipped_weights_epe_on_seeded_generated_pairs_is_pinned_and_each_inference_step_helps():
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
    # the test scenes themselves: if this moves, the generator changed and every anchor below with it
    assert err["zero"] == pytest.approx(7.320254, rel=1e-4)
    assert_anchor(err, {"default": 2.20477, "unrefined": 2.468136, "network alone": 2.50687,
                        "two passes": 2.085043}, GENERATED_REL)
    # the claims behind the defaults, which must survive a re-measurement of the anchors
    assert err["default"] < err["unrefined"] < err["network alone"] < err["zero"] / 2
    assert err["two passes"] < err["default"]


def test_shipped_weights_on_the_real_flying_chairs_pair(run_cli, shared_fixtures, tmp_path):
    """The real pair is 50x50, under FlowNetS's 64 px: the predictor upsamples it x2 and scales the flow back."""
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
    img1, img2 = (to_tensor(read_image(shared_fixtures / f"00001_img{i}.ppm")) / 255 for i in (1, 2))
    target = to_tensor(read_flo(shared_fixtures / "00001_flow.flo"))
    model = load_model()
    epe, in_frame = {}, {}
    for name, options in (("default", {}), ("unrefined", dict(refine=0)),
                          ("network alone", dict(refine=0, smooth=False)), ("hflip", dict(tta="hflip")),
                          ("all three", dict(passes=2, tta="hflip", refine=2))):
        tally = EpeTally()
        tally.add(Predictor(model, device="cpu", **options)(img1, img2), target)
        result = tally.result()
        assert result["valid_pixels"] == 50 * 50
        epe[name], in_frame[name] = result["epe"], result["in-frame"]
    assert result["out_of_frame_share"] == pytest.approx(202 / 2500)  # a chair's corner leaves at the top left
    # zero flow 1.783 on this pair; OpenCV DIS (medium) 0.898, in frame 0.523 (benchmarks/classical.py)
    assert_anchor(epe, {"default": 0.769917, "unrefined": 0.897152, "network alone": 1.000917,
                        "hflip": 0.572138, "all three": 0.558249}, REAL_PAIR_REL)
    assert_anchor(in_frame, {"default": 0.356864, "network alone": 0.587884}, REAL_PAIR_REL, "in-frame EPE")
    # the model card's claims: ahead of DIS with the defaults, and each inference step helps
    assert epe["default"] < 0.898 and in_frame["default"] < 0.523
    assert epe["all three"] < epe["hflip"] < epe["default"] < epe["unrefined"] < epe["network alone"]

    # `flowcli eval` on the folder measures the same thing
    out = tmp_path / "eval.json"
    cli = run_cli("eval", shared_fixtures, "--split", "all", "--json", out)
    assert cli.exit_code == 0, cli.output
    report = json.loads(out.read_text())
    assert report["pairs"] == 1 and report["valid_pixels"] == 50 * 50
    assert report["epe"] == pytest.approx(epe["default"], rel=1e-6)


def test_accurate_weights_are_the_wide_network_stored_in_fp16_and_record_their_stage():
    path = SHIPPED["accurate"]
    assert path.stat().st_size <= MAX_BYTES  # the bound for a second file
    with safe_open(path, "pt") as f:
        tensors = [f.get_tensor(k) for k in f.keys()]
    assert {t.dtype for t in tensors if t.is_floating_point()} == {torch.float16}
    meta = metadata_json(path)
    assert meta["config"]["width"] == 0.5 and meta["config"]["batch_norm"] is True
    assert meta["config"]["upsampler"] == "convex"
    # the model card's stage 18: `flowcli train --preset gpu --init accurate --upsampler convex --freeze-backbone
    # --loss epe --lr 1e-3 --minutes 35 --workers 0 --seed 151 --compile --device cpu` (validation EPE 2.782 at epoch 29)
    assert meta["val_epe"] == pytest.approx(2.782, abs=1e-3) and meta["epoch"] == 29
    recorded = TrainConfig.from_json(json.dumps(meta["train_config"]))
    assert recorded == PRESETS["gpu"].with_overrides(lr=1e-3, minutes=35.0, seed=151, width=0.5, compile=True,
                                                     num_workers=0, init="accurate", upsampler="convex",
                                                     freeze_backbone=True, loss="epe")
    model = load_model("accurate")
    assert next(model.parameters()).dtype == torch.float32  # the loader widens fp16 for inference
    # the paper's layers at width 0.5 and the head (3x3 conv 98 -> 32, 1x1 conv 32 -> 144)
    assert sum(p.numel() for p in model.parameters()) == 9_696_336 + (98 * 32 * 9 + 32) + (32 * 144 + 144) == 9_729_344


def test_accurate_weights_epe_is_pinned_and_below_the_default_network():
    cpu = torch.device("cpu")
    err = {}
    for name in SHIPPED:
        model = load_model(name)
        for mode, options in (("default", {}), ("network alone", dict(smooth=False, refine=0))):
            predictor = Predictor(model, device=cpu, **options)
            err[f"{name} {mode}"] = sum(torch.linalg.vector_norm(predictor(img1, img2) - flow, dim=1).mean().item() / 4
                                        for _, img1, img2, flow, _ in generated_batches(4, (192, 256), "cpu"))
    assert_anchor(err, {"accurate default": 2.110221, "accurate network alone": 2.332151}, GENERATED_REL)
    # the reason to ship it: lower EPE than the default network, with and without the inference steps
    assert err["accurate default"] < err["fast default"] and err["accurate network alone"] < err["fast network alone"]
