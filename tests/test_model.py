"""flowcli.model: FlowNetS shapes in eval and training mode, input checks, the paper's layer sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch.nn.functional as F

from flowcli.model import FlowNetS, ModelConfig, conv_gflops, count_parameters, pad_to_stride


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
    pyramid[0].abs().mean().backward()  # differentiable end to end: every layer reaches the finest flow
    no_gradient = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_gradient == []


def test_outputs_are_the_pyramid_scaled_by_flow_scale():
    torch.manual_seed(0)
    model = FlowNetS(ModelConfig(width=0.25, flow_scale=10.0)).train()  # not the default 20: really read
    img1, img2 = frames(64, 128)
    with torch.no_grad():
        x = torch.cat((img1, img2), 1) - torch.tensor([0.45, 0.432, 0.411] * 2).view(1, 6, 1, 1)
        raw = model.pyramid(x)
        scaled = model(img1, img2)
        model.eval()  # BatchNorm-free: the same pyramid; eval upsamples flow2 4x to the input size
        full = model(img1, img2)
    assert len(raw) == len(scaled) == 5
    for r, s in zip(raw, scaled):
        torch.testing.assert_close(s, 10.0 * r)
    torch.testing.assert_close(full, 10.0 * F.interpolate(raw[0], scale_factor=4, mode="bilinear",
                                                          align_corners=False))


def test_each_decoder_level_concatenates_the_encoder_skip_the_deconvolved_features_and_the_upsampled_flow():
    """FlowNetS's refinement: concat_l = (conv_l skip, deconv_l(concat_l+1), upsampled flow_l+1);
    flow_l = predict_flow_l(concat_l); deconv_l-1 reads concat_l. Checked on the live tensors."""
    torch.manual_seed(0)
    model = FlowNetS(ModelConfig(width=0.25)).eval()
    outputs, inputs = {}, {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.clone()))
        module.register_forward_pre_hook(lambda m, i, name=name: inputs.__setitem__(name, i[0].clone()))
    img1, img2 = frames(128, 192)
    with torch.no_grad():
        pyramid = model.pyramid(torch.cat((img1, img2), 1) - model.rgb_mean.view(1, 6, 1, 1))
    assert torch.equal(inputs["deconv5"], outputs["conv6_1"])
    assert torch.equal(inputs["predict_flow6"], outputs["conv6_1"])
    for level, skip in zip((5, 4, 3, 2), ("conv5_1", "conv4_1", "conv3_1", "conv2")):
        coarser = level + 1
        assert torch.equal(inputs[f"upsampled_flow{coarser}_to_{level}"], outputs[f"predict_flow{coarser}"])
        concat = torch.cat((outputs[skip], outputs[f"deconv{level}"],
                            outputs[f"upsampled_flow{coarser}_to_{level}"]), 1)
        assert torch.equal(inputs[f"predict_flow{level}"], concat), level
        if level > 2:
            assert torch.equal(inputs[f"deconv{level - 1}"], concat), level
        assert outputs[skip].abs().sum() > 0, skip  # a live skip, not a zeroed one
    for flow, level in zip(pyramid, (2, 3, 4, 5, 6)):
        assert torch.equal(flow, outputs[f"predict_flow{level}"])


@pytest.mark.parametrize("height,width", [(100, 128), (128, 100), (96, 96)])
def test_training_mode_needs_multiples_of_64(height, width):
    model = FlowNetS(ModelConfig(width=0.25)).train()
    with pytest.raises(ValueError, match=f"multiples of 64, got {height}x{width}"):
        model(*frames(height, width))


@pytest.mark.parametrize("height,width", [(63, 128), (128, 32), (50, 50)])
def test_input_smaller_than_64_is_refused(small_model, height, width):
    with pytest.raises(ValueError, match=rf"at least 64x64, got {height}x{width} \(HxW\)"):
        small_model(*frames(height, width))


def test_bad_frame_shapes_are_refused_naming_them(small_model):
    with pytest.raises(ValueError, match=r"\(1, 1, 64, 64\)"):
        small_model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\) vs \(1, 3, 64, 128\)"):
        small_model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 128))


# FlowNetS as in Dosovitskiy et al. 2015 (Fig. 2 and the supplementary) and FlowNetPytorch's
# flownets.py, at width 1.0: (name, feature inputs, fixed inputs, out, kernel, stride, transposed,
# input scale, bias without batch norm). Decoder inputs concatenate the encoder skip + deconvolved
# features (feature channels, which scale with the width) + the upsampled coarser flow (FLOW = 2 fixed
# channels); conv1 sees two RGB frames. "input scale": the layer's input is the padded frame / this.
RGB_PAIR, FLOW = 6, 2
PAPER_LAYERS = [
    ("conv1", (), RGB_PAIR, 64, 7, 2, False, 1, True),
    ("conv2", (64,), 0, 128, 5, 2, False, 2, True),
    ("conv3", (128,), 0, 256, 5, 2, False, 4, True),
    ("conv3_1", (256,), 0, 256, 3, 1, False, 8, True),
    ("conv4", (256,), 0, 512, 3, 2, False, 8, True),
    ("conv4_1", (512,), 0, 512, 3, 1, False, 16, True),
    ("conv5", (512,), 0, 512, 3, 2, False, 16, True),
    ("conv5_1", (512,), 0, 512, 3, 1, False, 32, True),
    ("conv6", (512,), 0, 1024, 3, 2, False, 32, True),
    ("conv6_1", (1024,), 0, 1024, 3, 1, False, 64, True),
    ("deconv5", (1024,), 0, 512, 4, 2, True, 64, False),
    ("deconv4", (512, 512), FLOW, 256, 4, 2, True, 32, False),
    ("deconv3", (512, 256), FLOW, 128, 4, 2, True, 16, False),
    ("deconv2", (256, 128), FLOW, 64, 4, 2, True, 8, False),
    ("predict_flow6", (1024,), 0, FLOW, 3, 1, False, 64, False),
    ("predict_flow5", (512, 512), FLOW, FLOW, 3, 1, False, 32, False),
    ("predict_flow4", (512, 256), FLOW, FLOW, 3, 1, False, 16, False),
    ("predict_flow3", (256, 128), FLOW, FLOW, 3, 1, False, 8, False),
    ("predict_flow2", (128, 64), FLOW, FLOW, 3, 1, False, 4, False),
    ("upsampled_flow6_to_5", (), FLOW, FLOW, 4, 2, True, 64, False),
    ("upsampled_flow5_to_4", (), FLOW, FLOW, 4, 2, True, 32, False),
    ("upsampled_flow4_to_3", (), FLOW, FLOW, 4, 2, True, 16, False),
    ("upsampled_flow3_to_2", (), FLOW, FLOW, 4, 2, True, 8, False),
]
ENCODER = [layer[0] for layer in PAPER_LAYERS if layer[0].startswith("conv")]


def scaled(channels: int, width: float) -> int:
    """Feature channels at `width`, for the widths tested here (where the product is a whole number)."""
    assert (channels * width).is_integer(), (channels, width)
    return int(channels * width)


def layer_sizes(layer, width: float = 1.0) -> tuple[int, int]:
    """(in, out) channels of a paper layer when feature channels are multiplied by `width`."""
    _, features, fixed, out, *_ = layer
    cin = sum(scaled(f, width) for f in features) + fixed
    return cin, (out if out == FLOW else scaled(out, width))


def paper_parameter_count(width: float, batch_norm: bool) -> int:
    """Weights k*k*in*out of every layer; a bias per output channel where the paper has one, except
    that batch norm replaces the encoder convs' biases by a scale and a shift per channel."""
    total = 0
    for layer in PAPER_LAYERS:
        name, kernel, bias = layer[0], layer[4], layer[8]
        cin, cout = layer_sizes(layer, width)
        total += kernel * kernel * cin * cout
        if name in ENCODER and batch_norm:
            total += 2 * cout
        elif bias:
            total += cout
    return total


def paper_conv_gflops(width: float, height: int, width_px: int) -> float:
    """2 x multiply-adds of every layer for one frame padded up to multiples of 64. A conv costs
    in*out*k*k per output pixel; a transposed conv scatters each input pixel into out*k*k."""
    padded_h, padded_w = -(-height // 64) * 64, -(-width_px // 64) * 64
    macs = 0
    for layer in PAPER_LAYERS:
        kernel, stride, transposed, scale = layer[4], layer[5], layer[6], layer[7]
        cin, cout = layer_sizes(layer, width)
        in_pixels = (padded_h // scale) * (padded_w // scale)
        out_pixels = in_pixels * 4 if transposed else in_pixels // (stride * stride)
        macs += (in_pixels if transposed else out_pixels) * cin * cout * kernel * kernel
    return 2 * macs / 1e9


def _weight_layer(model: nn.Module, name: str) -> nn.Module:
    module = getattr(model, name)
    if isinstance(module, nn.Sequential):
        module = module[0]
    assert isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)), name
    return module


@pytest.fixture(scope="module")
def paper_model() -> FlowNetS:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return FlowNetS(ModelConfig(width=1.0))


def test_the_layer_table_follows_its_strides():
    """The table's input scales agree with its strides: each encoder conv reads the previous one's
    output, and each decoder level runs at the scale of the encoder skip it concatenates."""
    layers = {layer[0]: layer for layer in PAPER_LAYERS}
    out_scale = {name: scale // 2 if transposed else scale * stride
                 for name, (*_, stride, transposed, scale, _) in layers.items()}
    assert [layers[name][7] for name in ENCODER[1:]] == [out_scale[name] for name in ENCODER[:-1]]
    assert out_scale["conv6_1"] == layers["deconv5"][7] == layers["predict_flow6"][7] == 64  # the model's STRIDE
    for level, skip in zip((5, 4, 3, 2), ("conv5_1", "conv4_1", "conv3_1", "conv2")):
        assert out_scale[f"deconv{level}"] == out_scale[f"upsampled_flow{level + 1}_to_{level}"] == out_scale[skip]
        assert layers[f"predict_flow{level}"][7] == out_scale[skip]


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_parameter_count_equals_the_paper_layer_list(width, batch_norm):
    with torch.device("meta"):
        model = FlowNetS(ModelConfig(width=width, batch_norm=batch_norm))
    assert count_parameters(model) == paper_parameter_count(width, batch_norm)


def test_parameter_counts_quoted_in_the_docs():
    assert paper_parameter_count(1.0, False) == pytest.approx(38.7e6, rel=2e-3)  # the paper's "38.7M parameters"
    assert paper_parameter_count(0.25, True) == 2_437_360  # weights/README.md, the shipped model


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("height,width_px", [(384, 512), (370, 500), (100, 130), (64, 64)])
def test_conv_gflops_equal_the_paper_layer_list(width, height, width_px):
    assert conv_gflops(ModelConfig(width=width), height, width_px) == pytest.approx(
        paper_conv_gflops(width, height, width_px), rel=1e-12)


def test_conv_gflops_pad_odd_sizes_and_do_not_count_batch_norm():
    config = ModelConfig(width=0.5)
    assert conv_gflops(config, 370, 500) == conv_gflops(config, 384, 512)  # padded to 384x512
    assert conv_gflops(config, 385, 512) == conv_gflops(config, 448, 512)
    assert conv_gflops(ModelConfig(width=0.5, batch_norm=True), 384, 512) == conv_gflops(config, 384, 512)
    # four times the pixels, four times the work: every layer's cost is proportional to its pixels
    assert conv_gflops(config, 768, 1024) == pytest.approx(4 * conv_gflops(config, 384, 512), rel=1e-12)


def test_width_one_layers_have_the_paper_sizes(paper_model):
    for entry in PAPER_LAYERS:
        name, k, stride, transposed, bias = entry[0], entry[4], entry[5], entry[6], entry[8]
        cin, cout = layer_sizes(entry)
        layer = _weight_layer(paper_model, name)
        assert isinstance(layer, nn.ConvTranspose2d) == transposed, name
        assert layer.stride == (stride, stride), name
        # "same" padding for convs; 1 for the 4x4 stride-2 transposed convs, which exactly doubles the side
        assert layer.padding == ((k - 1) // 2,) * 2, name
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
    assert len(ENCODER) == 10
    for name in ENCODER:
        block = getattr(with_bn, name)
        conv, bn = block[0], block[1]
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels, name
        assert conv.bias is None, name
        assert getattr(plain, name)[0].bias is not None, name
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 10
    # Each BN layer has weight+bias (2 * C) where the conv bias (C) was: net +C per layer.
    extra = sum(getattr(with_bn, n)[0].out_channels for n in ENCODER)
    assert count_parameters(with_bn) == count_parameters(plain) + extra
    with torch.no_grad():
        assert with_bn.eval()(*frames(64, 64)).shape == (1, 2, 64, 64)


def test_config_json_round_trip_and_unknown_fields():
    config = ModelConfig(width=0.25, batch_norm=True, flow_scale=10.0)
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="depth"):
        ModelConfig.from_json('{"width": 1.0, "depth": 3}')


def test_conv_gflops_of_a_batch_norm_model_at_the_smallest_size():
    # 64x64 leaves conv6 1x1, which BatchNorm in training mode refuses: counting must not train
    config = ModelConfig(width=0.25, batch_norm=True)
    assert conv_gflops(config, 64, 64) == pytest.approx(conv_gflops(ModelConfig(width=0.25), 64, 64), rel=1e-12)
