"""The convex upsampler (model.ModelConfig.upsampler="convex"): the 4x combination against independent
references, the head starting as bilinear, and the paths that carry it (engine, BN folding, weights
files, training with --init and --freeze-backbone, ONNX)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from flowcli.errors import CheckpointError, TrainingError
from flowcli.model import (MASK_PREFIX, FlowNetS, ModelConfig, bilinear_logits, convex_upsample,
                           convex_upsample_pixels)

TINY = dict(epochs=2, batch_size=4, crop=(64, 64), width=0.25, lr=1e-3, seed=3, augment=True)


def frames(batch: int, height: int, width: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator),
            torch.rand(batch, 3, height, width, generator=generator))


def tiled_logits(logits: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    return logits.view(1, -1, 1, 1).expand(batch, -1, height, width).contiguous()


def through_identity_head(flow: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The inference path given `logits` as its hidden features and an identity 1x1 conv."""
    with torch.no_grad():
        return convex_upsample_pixels(flow, logits, torch.eye(144).view(144, 144, 1, 1), torch.zeros(144))


UPSAMPLE_PATHS = pytest.mark.parametrize("upsample", [convex_upsample, through_identity_head],
                                         ids=["training", "inference"])


@UPSAMPLE_PATHS
def test_the_bilinear_logits_without_blend_are_bilinear_upsampling_borders_included(upsample):
    flow = torch.randn(2, 2, 5, 7, generator=torch.Generator().manual_seed(0))
    logits = tiled_logits(bilinear_logits(blend=0.0).clamp_min(-80), 2, 5, 7)  # log(0): weight e^-80
    want = F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample(flow, logits), want, atol=1e-5, rtol=0)


@UPSAMPLE_PATHS
@pytest.mark.parametrize("dy, dx", [(0, 0), (0, 2), (2, 1), (1, 0)])
def test_one_dominant_tap_copies_that_neighbour_into_the_whole_4x4_block(upsample, dy, dx):
    """Tap k = 3 * dy + dx (dy, dx in 0..2 around the coarse pixel) for every sub-pixel: each 4x4
    output block is the coarse flow at (row + dy - 1, col + dx - 1), clamped at the border."""
    flow = torch.arange(2 * 4 * 5, dtype=torch.float32).view(1, 2, 4, 5)
    logits = torch.full((9, 16), -50.0)
    logits[3 * dy + dx] = 0.0
    got = upsample(flow, tiled_logits(logits, 1, 4, 5)).numpy()[0]
    rows = np.clip(np.arange(4) + dy - 1, 0, 3)
    cols = np.clip(np.arange(5) + dx - 1, 0, 4)
    want = flow.numpy()[0][:, rows][:, :, cols].repeat(4, axis=1).repeat(4, axis=2)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
def test_the_training_path_equals_the_inference_path_and_gives_gradients(channels_last):
    generator = torch.Generator().manual_seed(2)
    flow = torch.randn(2, 2, 6, 5, generator=generator) * 10
    hidden = torch.randn(2, 16, 6, 5, generator=generator)
    weight = torch.randn(144, 16, 1, 1, generator=generator, requires_grad=True)
    bias = torch.randn(144, generator=generator)
    trained = convex_upsample(flow, F.conv2d(hidden, weight, bias))  # einsum, differentiable
    if channels_last:
        hidden = hidden.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        inferred = convex_upsample_pixels(flow, hidden, weight, bias)  # per-pixel matmuls
    torch.testing.assert_close(inferred, trained, atol=1e-4, rtol=0)
    trained.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    logits = F.conv2d(hidden, weight, bias).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():  # float32 all the same
        torch.testing.assert_close(convex_upsample(flow.bfloat16(), logits), trained, atol=0.1, rtol=0)
        assert convex_upsample(flow, logits).dtype == torch.float32
        torch.testing.assert_close(convex_upsample_pixels(flow, hidden, weight, bias), inferred, atol=1e-5, rtol=0)


def convex_copy(model: FlowNetS) -> FlowNetS:
    """`model` with the convex upsampler's head added (as train --init does: the head from its init)."""
    convex = FlowNetS(dataclasses.replace(model.config, upsampler="convex"))
    convex.load_state_dict({**convex.state_dict(), **model.state_dict()})
    return convex.eval()


def test_a_new_head_starts_as_bilinear_so_a_trained_network_keeps_its_flow(bn_model):
    plain = bn_model().eval()
    convex = convex_copy(plain)
    img1, img2 = frames(1, 70, 100)
    with torch.no_grad():
        want, got = plain(img1, img2), convex(img1, img2)
    assert got.shape == want.shape == (1, 2, 70, 100)
    # the head blends 1 % of the 3x3 mean into bilinear's weights
    assert 0 < (got - want).abs().max() <= 0.02 * want.abs().max()
    assert sum(p.numel() for n, p in convex.named_parameters() if n.startswith(MASK_PREFIX)) == (
        (16 + 32 + 2) * 16 * 9 + 16 + 16 * 144 + 144)  # 3x3 conv to deconv2's 16 channels, 1x1 to 9 x 16


def test_a_seed_gives_the_same_network_with_or_without_the_head():
    torch.manual_seed(5)
    plain = FlowNetS(ModelConfig(width=0.25)).state_dict()
    torch.manual_seed(5)
    convex = FlowNetS(ModelConfig(width=0.25, upsampler="convex")).state_dict()
    assert set(convex) - set(plain) == {MASK_PREFIX + n for n in ("0.weight", "0.bias", "2.weight", "2.bias")}
    assert all(torch.equal(convex[k], v) for k, v in plain.items())
    torch.testing.assert_close(convex[MASK_PREFIX + "2.bias"], bilinear_logits())


def test_bench_counts_the_heads_convolutions_and_runs_it(bn_model, tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.inference.bench import run_bench
    from flowcli.model import conv_gflops

    plain, convex = (conv_gflops(ModelConfig(width=0.25, upsampler=u), 384, 512) for u in ("bilinear", "convex"))
    head = 2 * 96 * 128 * ((16 + 32 + 2) * 16 * 9 + 16 * 144)  # 3x3 conv and 1x1 conv at 1/4 of 384x512
    assert convex - plain == pytest.approx(head / 1e9)
    save_weights(tmp_path / "convex.safetensors", convex_copy(bn_model()))
    result = run_bench(weights=tmp_path / "convex.safetensors", device="cpu", size=(64, 64), runs=1, warmup=0)
    assert result.gflops_per_image == pytest.approx(conv_gflops(ModelConfig(width=0.25, upsampler="convex"), 64, 64))


def test_training_mode_returns_the_finest_level_at_the_input_size():
    model = FlowNetS(ModelConfig(width=0.25, upsampler="convex")).train()
    pyramid = model(*frames(2, 128, 192))
    assert [tuple(f.shape[-2:]) for f in pyramid] == [(128, 192), (16, 24), (8, 12), (4, 6), (2, 3)]


def test_the_engine_and_bn_folding_carry_the_head(bn_model):
    from flowcli.inference.engine import Predictor

    model = convex_copy(bn_model())
    with torch.no_grad():  # a head that no longer starts as bilinear
        model.upsample_mask[-1].weight.normal_(std=0.5)
    img1, img2 = frames(2, 70, 100)
    want = model(img1, img2).detach()  # with gradients: the training path's upsampling (einsum)
    for channels_last in (False, True):
        got = Predictor(model, device="cpu", channels_last=channels_last, smooth=False, refine=0)(img1, img2)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_weights_file_keeps_the_upsampler_and_an_older_config_reads_as_bilinear(bn_model, tmp_path):
    from flowcli.checkpoint import load_model, metadata_json, save_weights

    model = convex_copy(bn_model())
    save_weights(tmp_path / "convex.safetensors", model)
    loaded = load_model(tmp_path / "convex.safetensors")
    assert loaded.config.upsampler == "convex" and metadata_json(tmp_path / "convex.safetensors")["config"]["upsampler"] == "convex"
    img1, img2 = frames(1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(img1, img2), model(img1, img2))
    old = '{"arch": "flownets", "batch_norm": true, "flow_scale": 20.0, "subtract_mean": true, "width": 0.25}'
    assert ModelConfig.from_json(old).upsampler == "bilinear"
    with pytest.raises(ValueError, match="upsampler='cubic': choose bilinear or convex"):
        ModelConfig(upsampler="cubic")


def test_freeze_backbone_trains_the_head_alone_from_a_bilinear_file(tiny_chairs, tmp_path, bn_model):
    from flowcli.checkpoint import save_weights
    from flowcli.training.config import resolve_config
    from flowcli.training.loop import train

    start = bn_model()
    save_weights(tmp_path / "start.safetensors", start)
    config = resolve_config(data_dir=tiny_chairs, init=tmp_path / "start.safetensors", upsampler="convex",
                            freeze_backbone=True, **TINY)
    assert config.upsampler == "convex" and config.batch_norm
    train(config, output=tmp_path / "run", data_dir=tiny_chairs)
    after = load_file(str(tmp_path / "run" / "last.safetensors"))
    before = start.state_dict()
    head = [k for k in after if k.startswith(MASK_PREFIX)]
    assert len(head) == 4 and set(after) == set(before) | set(head)
    assert all(torch.equal(after[k], before[k]) for k in before)  # weights and BatchNorm statistics
    torch.manual_seed(TINY["seed"])  # the head the run added: a seed gives the same network
    added = FlowNetS(ModelConfig(width=0.25, batch_norm=True, upsampler="convex")).state_dict()
    torch.testing.assert_close(added[MASK_PREFIX + "2.bias"], bilinear_logits())
    assert [k for k in head if torch.equal(after[k], added[k])] == []  # both of the head's convs trained


def test_freeze_backbone_needs_the_convex_head_and_the_head_is_added_at_the_files_width(bn_model, tmp_path):
    from flowcli.checkpoint import save_weights
    from flowcli.training.config import TrainConfig, resolve_config
    from flowcli.training.setup import read_init

    with pytest.raises(TrainingError, match="^freeze_backbone=True: only the convex upsampler's head"):
        TrainConfig(freeze_backbone=True)
    with pytest.raises(TrainingError, match="^freeze_backbone=True: the head would learn to upsample an untrained"):
        TrainConfig(freeze_backbone=True, upsampler="convex")
    save_weights(tmp_path / "convex.safetensors", convex_copy(bn_model()))  # a file with the head: no --upsampler needed
    config = resolve_config("gpu", init=tmp_path / "convex.safetensors", freeze_backbone=True)
    assert config.upsampler == "convex" and config.freeze_backbone
    save_weights(tmp_path / "narrow.safetensors", bn_model(width=0.25))
    wide = ModelConfig(width=0.5, batch_norm=True, upsampler="convex")
    with pytest.raises(CheckpointError, match="grow the width in one run, add the upsampler in the next"):
        read_init(tmp_path / "narrow.safetensors", wide, seed=0)
    save_weights(tmp_path / "narrow-convex.safetensors", convex_copy(bn_model(width=0.25)))
    with pytest.raises(CheckpointError, match="the convex upsampler's head does not grow"):
        read_init(tmp_path / "narrow-convex.safetensors", wide, seed=0)


def test_the_cli_refuses_freeze_backbone_without_the_head_in_one_line(run_cli, assert_clean_failure, tmp_path):
    result = run_cli("train", "--freeze-backbone", "--epochs", "1", "-o", tmp_path / "run")
    assert_clean_failure(result, "--freeze-backbone: only the convex upsampler's head would train",
                         before=set(), folder=tmp_path)


def test_onnx_export_of_a_convex_network_matches_pytorch(bn_model, tmp_path):
    pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
    pytest.importorskip("onnxscript", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
    onnx = pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install -e ".[onnx]")')
    from flowcli.checkpoint import save_weights
    from flowcli.inference.export import export_onnx

    model = convex_copy(bn_model(width=0.125))
    with torch.no_grad():
        model.upsample_mask[-1].weight.normal_(std=0.5)
    save_weights(tmp_path / "convex.safetensors", model)
    result = export_onnx(tmp_path / "convex.onnx", weights=tmp_path / "convex.safetensors", check_sizes=((64, 128),))
    assert all(c.max_abs_px <= result.tolerance_px for c in result.parity)
    exported = onnx.load(str(tmp_path / "convex.onnx"))
    meta = {p.key: p.value for p in exported.metadata_props}
    assert meta["output"].startswith("flow: (B, 2, H, W)") and "convex" in meta["output"]
    assert [o.name for o in exported.graph.output] == ["flow"]  # full resolution: not FlowNet's flow2
    # the inference path (per-pixel matmuls): onnxruntime ran the training path's einsum 2x slower
    ops = {node.op_type for node in exported.graph.node}
    assert "Einsum" not in ops and {"Gemm", "MatMul", "Softmax"} <= ops
