"""flowcli.model: FlowNetS shapes in eval and training mode, input checks, the paper's layer sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch.nn.functional as F

from flowcli.model import FlowNetS, ModelConfig, count_parameters, pad_to_stride


@pytest.fixture(scope="module")
def small_model() -> FlowNetS:
    torch.manual_seed(0)
    return FlowNetS(ModelConfig(width=0.25)).eval()


def frames(height: int, width: int, batch: int = 1, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator),
            torch.rand(batch, 3, height, width, generator=generator))


@pytest.mark.parametrize("height,width", [(384, 512), (100, 130), (64, 64), (65, 127)])
def test_eval_output_is_full_resolution_flow(small_model, height, width):
    img1, img2 = frames(height, width, batch=2 if height < 200 else 1)
    with torch.no_grad():
        flow = small_model(img1, img2)
    assert flow.shape == (img1.shape[0], 2, height, width)
    assert flow.dtype == torch.float32
    assert torch.isfinite(flow).all()


def test_inputs_are_padded_evenly_on_all_sides_and_the_flow_cropped_back(small_model):
    img1, img2 = frames(70, 100)
    padded, offset = pad_to_stride(img1)
    assert padded.shape[-2:] == (128, 128) and offset == (29, 14)  # 58 rows: 29 + 29; 28 columns: 14 + 14
    assert torch.equal(padded[..., 29:99, 14:114], img1)
    assert torch.equal(padded[..., 0, 14:114], img1[..., 0, :])  # edges replicated
    assert torch.equal(padded[..., 29, :14], img1[..., 0, :1].expand(-1, -1, 14))
    with torch.no_grad():
        flow = small_model(img1, img2)
        whole = small_model(*(F.pad(x, (14, 14, 29, 29), mode="replicate") for x in (img1, img2)))
    torch.testing.assert_close(flow, whole[..., 29:99, 14:114])
    assert pad_to_stride(padded)[1] == (0, 0)


def test_training_mode_returns_five_levels_quarter_to_one_sixty_fourth():
    torch.manual_seed(0)
    model = FlowNetS(ModelConfig(width=0.25)).train()
    img1, img2 = frames(128, 192, batch=2)
    pyramid = model(img1, img2)
    assert isinstance(pyramid, list) and len(pyramid) == 5
    assert [tuple(f.shape) for f in pyramid] == [
        (2, 2, 128 // d, 192 // d) for d in (4, 8, 16, 32, 64)
    ]
    pyramid[0].abs().mean().backward()  # differentiable end to end
    assert model.conv1[0].weight.grad is not None


def test_training_outputs_are_scaled_by_flow_scale():
    torch.manual_seed(0)
    model = FlowNetS(ModelConfig(width=0.25, flow_scale=20.0)).train()
    img1, img2 = frames(64, 64)
    with torch.no_grad():
        x = torch.cat((img1, img2), 1) - model.rgb_mean.view(1, 6, 1, 1)
        raw = model.pyramid(x)
        scaled = model(img1, img2)
    for r, s in zip(raw, scaled):
        assert torch.allclose(s, 20.0 * r)


@pytest.mark.parametrize("height,width", [(100, 128), (128, 100), (96, 96)])
def test_training_mode_needs_multiples_of_64(height, width):
    model = FlowNetS(ModelConfig(width=0.25)).train()
    with pytest.raises(ValueError, match=f"multiples of 64, got {height}x{width}"):
        model(*frames(height, width))


@pytest.mark.parametrize("height,width", [(63, 128), (128, 32), (50, 50)])
def test_input_smaller_than_64_is_refused(small_model, height, width):
    with pytest.raises(ValueError, match=f"at least 64x64, got {width}x{height}"):
        small_model(*frames(height, width))


def test_bad_frame_shapes_are_refused_naming_them(small_model):
    with pytest.raises(ValueError, match=r"\(1, 1, 64, 64\)"):
        small_model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\) vs \(1, 3, 64, 128\)"):
        small_model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 128))


# FlowNetS as in Dosovitskiy et al. 2015 (Fig. 2 and the supplementary) and FlowNetPytorch's
# flownets.py, at width 1.0 without batch norm: (name, feature inputs, fixed inputs, out, kernel, bias).
# Decoder inputs concatenate deconvolved features + the encoder skip (feature channels, which scale
# with the width) + the upsampled coarser flow (FLOW = 2 fixed channels); conv1 sees two RGB frames.
RGB_PAIR, FLOW = 6, 2
PAPER_LAYERS = [
    ("conv1", (), RGB_PAIR, 64, 7, True),
    ("conv2", (64,), 0, 128, 5, True),
    ("conv3", (128,), 0, 256, 5, True),
    ("conv3_1", (256,), 0, 256, 3, True),
    ("conv4", (256,), 0, 512, 3, True),
    ("conv4_1", (512,), 0, 512, 3, True),
    ("conv5", (512,), 0, 512, 3, True),
    ("conv5_1", (512,), 0, 512, 3, True),
    ("conv6", (512,), 0, 1024, 3, True),
    ("conv6_1", (1024,), 0, 1024, 3, True),
    ("deconv5", (1024,), 0, 512, 4, False),
    ("deconv4", (512, 512), FLOW, 256, 4, False),
    ("deconv3", (256, 512), FLOW, 128, 4, False),
    ("deconv2", (128, 256), FLOW, 64, 4, False),
    ("predict_flow6", (1024,), 0, FLOW, 3, False),
    ("predict_flow5", (512, 512), FLOW, FLOW, 3, False),
    ("predict_flow4", (256, 512), FLOW, FLOW, 3, False),
    ("predict_flow3", (128, 256), FLOW, FLOW, 3, False),
    ("predict_flow2", (64, 128), FLOW, FLOW, 3, False),
    ("upsampled_flow6_to_5", (), FLOW, FLOW, 4, False),
    ("upsampled_flow5_to_4", (), FLOW, FLOW, 4, False),
    ("upsampled_flow4_to_3", (), FLOW, FLOW, 4, False),
    ("upsampled_flow3_to_2", (), FLOW, FLOW, 4, False),
]


def layer_sizes(layer, width: float = 1.0) -> tuple[int, int]:
    """(in, out) channels of a paper layer when feature channels are multiplied by `width`."""
    _, features, fixed, out, _, _ = layer
    cin = sum(int(f * width) for f in features) + fixed
    return cin, (out if out == FLOW else int(out * width))


def _weight_layer(model: nn.Module, name: str) -> nn.Module:
    module = getattr(model, name)
    if isinstance(module, nn.Sequential):
        module = module[0]
    assert isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)), name
    return module


@pytest.fixture(scope="module")
def paper_model() -> FlowNetS:
    torch.manual_seed(0)
    return FlowNetS(ModelConfig(width=1.0))


def test_width_one_parameter_count_equals_the_paper_layer_list(paper_model):
    expected = 0
    for layer in PAPER_LAYERS:
        cin, cout = layer_sizes(layer)
        kernel, bias = layer[4], layer[5]
        expected += kernel * kernel * cin * cout + (cout if bias else 0)
    assert count_parameters(paper_model) == expected
    assert expected == pytest.approx(38.7e6, rel=2e-3)  # "38.7M parameters"


def test_width_one_layers_have_the_paper_sizes(paper_model):
    for entry in PAPER_LAYERS:
        name, k, bias = entry[0], entry[4], entry[5]
        cin, cout = layer_sizes(entry)
        layer = _weight_layer(paper_model, name)
        # Conv2d weights are (out, in, k, k); ConvTranspose2d weights are (in, out, k, k).
        shape = (cin, cout, k, k) if isinstance(layer, nn.ConvTranspose2d) else (cout, cin, k, k)
        assert tuple(layer.weight.shape) == shape, name
        assert (layer.bias is not None) == bias, name


def test_half_width_halves_every_feature_channel_count():
    model = FlowNetS(ModelConfig(width=0.5))
    for layer in PAPER_LAYERS:
        module = _weight_layer(model, layer[0])
        assert (module.in_channels, module.out_channels) == layer_sizes(layer, 0.5), layer[0]
    assert _weight_layer(model, "conv6_1").out_channels == 512
    assert _weight_layer(model, "deconv4").in_channels == 256 + 256 + 2


def test_batch_norm_adds_bn_and_removes_conv_biases():
    plain = FlowNetS(ModelConfig(width=0.25))
    with_bn = FlowNetS(ModelConfig(width=0.25, batch_norm=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    encoder = [name for name, *_ in PAPER_LAYERS if name.startswith("conv")]
    assert len(encoder) == 10
    for name in encoder:
        block = getattr(with_bn, name)
        conv, bn = block[0], block[1]
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels, name
        assert conv.bias is None, name
        assert getattr(plain, name)[0].bias is not None, name
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 10
    # Each BN layer has weight+bias (2 * C) where the conv bias (C) was: net +C per layer.
    extra = sum(getattr(with_bn, n)[0].out_channels for n in encoder)
    assert count_parameters(with_bn) == count_parameters(plain) + extra
    with torch.no_grad():
        assert with_bn.eval()(*frames(64, 64)).shape == (1, 2, 64, 64)


def test_config_json_round_trip_and_unknown_fields():
    config = ModelConfig(width=0.25, batch_norm=True, flow_scale=10.0)
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="depth"):
        ModelConfig.from_json('{"width": 1.0, "depth": 3}')
