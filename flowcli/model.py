"""FlowNetS (Dosovitskiy et al., ICCV 2015) with every layer written out. Imports torch only.

The encoder stacks both RGB frames (6 channels) and contracts them 64x; the decoder refines flow
coarse-to-fine: at each level it concatenates the deconvolved features, the encoder's skip
features and the learned 2x upsampling of the coarser flow, then predicts flow again.

Two layouts (ModelConfig.arch): "flownets", the paper's network, and "reference", the FlowNetSimple
variant the baseline flowcli compares to: no conv6_1 and no flow6, its decoder starts from
deconv5(conv6) beside conv5_1, and it upsamples coarse flow with 5x5 transposed convs cropped to the
skip features. The reference's helpers `conv`, `transposedConv` and `predict_flow` are not shown in
its description; their names match FlowNetPytorch's, whose layers are exactly this module's `conv`,
`deconv` and `predict_flow`, so both layouts are built from them.

Either layout predicts its finest flow (flow2) at 1/4 of the input. ModelConfig.upsampler says how
it reaches full resolution: "bilinear" (FlowNet's), or "convex": a small head on the features that
predict flow2 gives each output pixel softmax weights over the 3x3 coarse flows around it (RAFT's
learned upsampling, Teed & Deng 2020, at 4x), which keeps motion edges sharp where bilinear blurs them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

# Channel widths of the paper's layout at width 1.0.
ENCODER_CHANNELS = {
    "conv1": 64, "conv2": 128, "conv3": 256, "conv3_1": 256, "conv4": 512,
    "conv4_1": 512, "conv5": 512, "conv5_1": 512, "conv6": 1024, "conv6_1": 1024,
}
DECODER_CHANNELS = {"deconv5": 512, "deconv4": 256, "deconv3": 128, "deconv2": 64}
RGB_MEAN = (0.45, 0.432, 0.411)  # FlowNetPytorch's input mean, images in [0, 1]
ARCHS = ("flownets", "reference")
UPSAMPLERS = ("bilinear", "convex")
MASK_PREFIX = "upsample_mask."  # the convex upsampler's head in a state dict
FACTOR = 4  # flow2's resolution is 1/FACTOR of the input
STRIDE = 64  # total contraction of the encoder; inputs are padded to a multiple of it
MIN_SIDE = 64


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a FlowNetS; stored in every weights file's metadata."""

    width: float = 1.0  # channel multiplier; 1.0 is the paper's 38.7M-parameter network
    batch_norm: bool = False
    flow_scale: float = 20.0  # the network predicts flow / flow_scale ("div_flow"); the reference: 1.0
    arch: str = "flownets"  # or "reference"; files saved before the field existed hold "flownets"
    # The reference's description does not say how it normalises input; our choice for both layouts:
    # images in [0, 1] minus RGB_MEAN, as FlowNetPytorch (False: the images in [0, 1] as they are).
    subtract_mean: bool = True
    # flow2 -> full resolution: "bilinear" (the paper's), or "convex" (learned weights; module docstring).
    # Files saved before the field existed hold "bilinear".
    upsampler: str = "bilinear"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r}: choose {' or '.join(ARCHS)}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler={self.upsampler!r}: choose {' or '.join(UPSAMPLERS)}")

    def channels(self, name: str) -> int:
        base = ENCODER_CHANNELS.get(name) or DECODER_CHANNELS[name]
        return max(8, int(round(base * self.width)))

    def to_json(self) -> str:
        fields_ = asdict(self)
        if self.upsampler == "bilinear":  # as before the field existed: older flowcli reads the file
            del fields_["upsampler"]
        return json.dumps(fields_, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown model config fields {sorted(unknown)}")
        return cls(**raw)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int, batch_norm: bool) -> nn.Sequential:
    """Conv -> (BatchNorm) -> LeakyReLU(0.1), 'same'-style padding as in FlowNet."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


def deconv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Learned 2x upsampling of features (4x4 transposed conv, stride 2) -> LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.1, inplace=True)
    )


def predict_flow(in_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, 2, 3, 1, 1, bias=False)


def upsample_flow() -> nn.ConvTranspose2d:
    """Learned 2x upsampling of a coarse flow, fed to the next finer level."""
    return nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False)


def upsample_flow_reference() -> nn.ConvTranspose2d:
    """The reference's flow upsampling: 5x5, stride 2, padding 1 gives 2n + 1; crop_like trims it."""
    return nn.ConvTranspose2d(2, 2, 5, 2, 1, bias=False)


def mask_head(in_ch: int, hidden: int) -> nn.Sequential:
    """The convex upsampler's head: flow2's input features -> 9 logits for each of the 4x4 output
    pixels of a coarse pixel (9 x 16 channels)."""
    return nn.Sequential(nn.Conv2d(in_ch, hidden, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(hidden, 9 * FACTOR * FACTOR, 1))


def bilinear_logits(blend: float = 0.01) -> torch.Tensor:
    """(9 * 16,) logits whose softmax weights reproduce bilinear 4x upsampling (align_corners=False),
    blended with a `blend` share of the 3x3 mean: a tap bilinear leaves at zero keeps a weight Adam
    can move (a -inf logit would never learn). The head starts from them, so a bilinear network
    given the head computes (almost) the same flow."""
    offsets = [(2 * s - (FACTOR - 1)) / (2 * FACTOR) for s in range(FACTOR)]  # -3/8, -1/8, 1/8, 3/8
    taps = torch.tensor([[max(0.0, -d), 1 - abs(d), max(0.0, d)] for d in offsets], dtype=torch.float64)
    weights = torch.einsum("yi,xj->ijyx", taps, taps)  # (tap row, tap col, sub-row, sub-col)
    weights = (1 - blend) * weights + blend / 9
    return weights.log().reshape(-1).float()


def convex_upsample(flow: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) flow and (B, 9 * 16, h, w) logits (channel tap * 16 + sub-pixel) -> (B, 2, 4h, 4w):
    each output pixel a convex combination (softmax of its 9 logits) of the 3x3 coarse flows around
    its coarse pixel; the border is replicated, as bilinear clamps. Computed outside autocast and
    returned in float32: bf16's 8-bit mantissa would round a 100 px flow by up to 0.25 px, as much as the
    head wins. One einsum: its backward is 2-3x faster than a loop's (benchmarks/README.md, Convex
    upsampler); inference takes convex_upsample_pixels."""
    batch, _, height, width = flow.shape
    with _float32(flow.device):
        # NCHW first: on channels-last logits (the training layout) the softmax is 2-3x slower
        weights = logits.float().contiguous().view(batch, 9, FACTOR * FACTOR, height, width).softmax(dim=1)
        up = torch.einsum("bkshw,bckhw->bcshw", weights, torch.stack(_taps(flow.float()), 2))
        # (B, 2 * 16, h, w), channel c * 16 + sub-row * 4 + sub-col: pixel_shuffle's order
        return F.pixel_shuffle(up.reshape(batch, 2 * FACTOR * FACTOR, height, width), FACTOR)


def convex_upsample_pixels(flow: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor) -> torch.Tensor:
    """convex_upsample(flow, conv1x1(hidden)) for inference, the head's last 1x1 conv (`weight`,
    `bias`) included: the logits are made pixel by pixel ((B*h*w, 9, 16), a matmul on hidden's
    channels-last memory) and each pixel's 2x9 taps times its 9x16 weights is one batched matmul, so
    the 144 logit channels are never transposed (benchmarks/README.md, Convex upsampler)."""
    batch, _, height, width = flow.shape
    pixels = batch * height * width
    with _float32(flow.device):
        features = hidden.float().permute(0, 2, 3, 1).reshape(pixels, -1)  # a view when channels-last
        logits = torch.addmm(bias.float(), features, weight.float().flatten(1).t())  # (pixels, 144)
        weights = logits.view(pixels, 9, FACTOR * FACTOR).softmax(dim=1)
        taps = torch.stack(_taps(flow.float()), -1).permute(0, 2, 3, 1, 4).reshape(pixels, 2, 9)
        up = torch.bmm(taps, weights)  # (pixels, 2, 16)
        # (B, h, w, 2, sub-row, sub-col) -> (B, 2, h, sub-row, w, sub-col) = (B, 2, 4h, 4w)
        up = up.view(batch, height, width, 2, FACTOR, FACTOR).permute(0, 3, 1, 4, 2, 5)
        return up.reshape(batch, 2, FACTOR * height, FACTOR * width)


def _taps(flow: torch.Tensor) -> list[torch.Tensor]:
    """(B, 2, h, w) -> 9 (B, 2, h, w) views: each pixel's 3x3 neighbours, row by row, the border
    replicated."""
    height, width = flow.shape[-2:]
    padded = F.pad(flow.contiguous(), (1, 1, 1, 1), mode="replicate")
    return [padded[:, :, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)]


def _float32(device: torch.device):
    """Autocast off (there is none on the meta device, where conv_gflops builds the model)."""
    return torch.autocast(device.type, enabled=False) if device.type != "meta" else contextlib.nullcontext()


def crop_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """x cut to target's height and width from the top left, as FlowNetPytorch's crop_like."""
    return x[:, :, :target.shape[2], :target.shape[3]]


class FlowNetS(nn.Module):
    """FlowNetS. forward(img1, img2) takes (B, 3, H, W) floats in [0, 1].

    eval mode: returns (B, 2, H, W) flow in pixels at the input resolution (any H, W >= 64).
    train mode: returns the pyramid [flow2, flow3, flow4, flow5, flow6] at 1/4 ... 1/64 of the
    input ([flow2 .. flow5] for arch "reference"; with the convex upsampler flow2 comes upsampled
    to the input's size), in pixels (already multiplied by flow_scale); H and W must be multiples of 64.
    """

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        if config.arch == "reference":
            self._build_reference(config.channels, config.batch_norm)
        else:
            self._build_flownets(config.channels, config.batch_norm)
        # (6,), not (1, 6, 1, 1): a 4-D buffer turned channels-last aliases itself, which DDP rejects.
        mean = RGB_MEAN * 2 if config.subtract_mean else (0.0,) * 6  # zeros: no normalisation, one code path
        self.register_buffer("rgb_mean", torch.tensor(mean), persistent=False)
        self.upsample_mask = None
        self._init_weights()
        if config.upsampler == "convex":  # built last: a seed gives the same network with or without it
            c = config.channels
            # flow2's input: deconvolved features, the conv2 skip and the upsampled flow3
            self.upsample_mask = mask_head(c("deconv2") + c("conv2") + 2, c("deconv2"))
            self._init_head()

    def _build_encoder(self, c, bn: bool) -> None:
        """conv1 .. conv6, shared by both layouts: the frames contracted 64x."""
        self.conv1 = conv(6, c("conv1"), 7, 2, bn)
        self.conv2 = conv(c("conv1"), c("conv2"), 5, 2, bn)
        self.conv3 = conv(c("conv2"), c("conv3"), 5, 2, bn)
        self.conv3_1 = conv(c("conv3"), c("conv3_1"), 3, 1, bn)
        self.conv4 = conv(c("conv3_1"), c("conv4"), 3, 2, bn)
        self.conv4_1 = conv(c("conv4"), c("conv4_1"), 3, 1, bn)
        self.conv5 = conv(c("conv4_1"), c("conv5"), 3, 2, bn)
        self.conv5_1 = conv(c("conv5"), c("conv5_1"), 3, 1, bn)
        self.conv6 = conv(c("conv5_1"), c("conv6"), 3, 2, bn)

    def _build_flownets(self, c, bn: bool) -> None:
        """The paper's layout: conv1 .. conv6_1, then flow6 .. flow2."""
        self._build_encoder(c, bn)
        self.conv6_1 = conv(c("conv6"), c("conv6_1"), 3, 1, bn)

        # Each decoder level sees: deconvolved features + encoder skip + upsampled flow (2).
        in5 = c("conv6_1")
        in4 = c("deconv5") + c("conv5_1") + 2
        in3 = c("deconv4") + c("conv4_1") + 2
        in2 = c("deconv3") + c("conv3_1") + 2
        in1 = c("deconv2") + c("conv2") + 2
        self.deconv5 = deconv(in5, c("deconv5"))
        self.deconv4 = deconv(in4, c("deconv4"))
        self.deconv3 = deconv(in3, c("deconv3"))
        self.deconv2 = deconv(in2, c("deconv2"))
        self.predict_flow6 = predict_flow(in5)
        self.predict_flow5 = predict_flow(in4)
        self.predict_flow4 = predict_flow(in3)
        self.predict_flow3 = predict_flow(in2)
        self.predict_flow2 = predict_flow(in1)
        self.upsampled_flow6_to_5 = upsample_flow()
        self.upsampled_flow5_to_4 = upsample_flow()
        self.upsampled_flow4_to_3 = upsample_flow()
        self.upsampled_flow3_to_2 = upsample_flow()

    def _build_reference(self, c, bn: bool) -> None:
        """The reference's layout: conv1 .. conv6 (no conv6_1), then flow5 .. flow2 (no flow6)."""
        self._build_encoder(c, bn)

        # Level 5 sees skip + deconvolved features only (no coarser flow); finer ones add flow (2).
        in5 = c("conv5_1") + c("deconv5")  # 1024 at width 1.0
        in4 = c("conv4_1") + c("deconv4") + 2  # 770
        in3 = c("conv3_1") + c("deconv3") + 2  # 386
        in2 = c("conv2") + c("deconv2") + 2  # 194
        self.deconv5 = deconv(c("conv6"), c("deconv5"))
        self.deconv4 = deconv(in5, c("deconv4"))
        self.deconv3 = deconv(in4, c("deconv3"))
        self.deconv2 = deconv(in3, c("deconv2"))
        self.predict_flow5 = predict_flow(in5)
        self.predict_flow4 = predict_flow(in4)
        self.predict_flow3 = predict_flow(in3)
        self.predict_flow2 = predict_flow(in2)
        self.upsampled_flow5_to_4 = upsample_flow_reference()
        self.upsampled_flow4_to_3 = upsample_flow_reference()
        self.upsampled_flow3_to_2 = upsample_flow_reference()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, m in self.named_children():
            if name.startswith("predict_flow"):
                nn.init.normal_(m.weight, std=1e-3)  # start near zero flow: a sane first guess

    def _init_head(self) -> None:
        """The convex upsampler starts as bilinear: a trained network given the head keeps its flow."""
        first, last = self.upsample_mask[0], self.upsample_mask[-1]
        nn.init.kaiming_normal_(first.weight, a=0.1, nonlinearity="leaky_relu")
        nn.init.zeros_(first.bias)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(bilinear_logits())

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stacked, mean-subtracted frames (B, 6, H, W), H and W multiples of 64 -> the flows finest
        first, in units of flow / flow_scale: [flow2 .. flow6], or [flow2 .. flow5] for "reference".
        With the convex upsampler the finest is flow2 already upsampled: (B, 2, H, W)."""
        levels = self._pyramid_reference if self.config.arch == "reference" else self._pyramid_flownets
        flows, features = levels(x)
        if self.upsample_mask is not None:
            flows[0] = self._convex(flows[0], features)
        return flows

    def _convex(self, flow2: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training, and conv_gflops's hooks, see the head's modules
            return convex_upsample(flow2, self.upsample_mask(features))
        last = self.upsample_mask[-1]
        return convex_upsample_pixels(flow2, self.upsample_mask[:-1](features), last.weight, last.bias)

    def full_resolution(self, finest: torch.Tensor) -> torch.Tensor:
        """pyramid()[0] at the padded input's resolution: flow2 upsampled bilinearly, or as it is
        when the convex upsampler made it."""
        if self.upsample_mask is not None:
            return finest
        return F.interpolate(finest, scale_factor=FACTOR, mode="bilinear", align_corners=False)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The skip features at 1/4 .. 1/32 and conv6's output at 1/64."""
        out_conv2 = self.conv2(self.conv1(x))
        out_conv3 = self.conv3_1(self.conv3(out_conv2))
        out_conv4 = self.conv4_1(self.conv4(out_conv3))
        out_conv5 = self.conv5_1(self.conv5(out_conv4))
        return out_conv2, out_conv3, out_conv4, out_conv5, self.conv6(out_conv5)

    def _pyramid_flownets(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """[flow2 .. flow6] and flow2's input features."""
        out_conv2, out_conv3, out_conv4, out_conv5, out_conv6 = self._encode(x)
        out_conv6 = self.conv6_1(out_conv6)

        flow6 = self.predict_flow6(out_conv6)  # (B, 2, H/64, W/64)
        concat5 = torch.cat((out_conv5, self.deconv5(out_conv6), self.upsampled_flow6_to_5(flow6)), 1)
        flow5 = self.predict_flow5(concat5)
        concat4 = torch.cat((out_conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), 1)
        flow4 = self.predict_flow4(concat4)
        concat3 = torch.cat((out_conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), 1)
        flow3 = self.predict_flow3(concat3)
        concat2 = torch.cat((out_conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), 1)
        flow2 = self.predict_flow2(concat2)  # (B, 2, H/4, W/4)
        return [flow2, flow3, flow4, flow5, flow6], concat2

    def _pyramid_reference(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """[flow2 .. flow5] and flow2's input features."""
        out_conv2, out_conv3, out_conv4, out_conv5, out_conv6 = self._encode(x)

        concat5 = torch.cat((out_conv5, crop_like(self.deconv5(out_conv6), out_conv5)), 1)
        flow5 = self.predict_flow5(concat5)  # (B, 2, H/32, W/32)
        concat4 = torch.cat((out_conv4, crop_like(self.deconv4(concat5), out_conv4),
                             crop_like(self.upsampled_flow5_to_4(flow5), out_conv4)), 1)
        flow4 = self.predict_flow4(concat4)
        concat3 = torch.cat((out_conv3, crop_like(self.deconv3(concat4), out_conv3),
                             crop_like(self.upsampled_flow4_to_3(flow4), out_conv3)), 1)
        flow3 = self.predict_flow3(concat3)
        concat2 = torch.cat((out_conv2, crop_like(self.deconv2(concat3), out_conv2),
                             crop_like(self.upsampled_flow3_to_2(flow3), out_conv2)), 1)
        flow2 = self.predict_flow2(concat2)  # (B, 2, H/4, W/4)
        return [flow2, flow3, flow4, flow5], concat2

    def forward(self, img1: torch.Tensor, img2: torch.Tensor):
        check_input(img1, img2)
        x = torch.cat((img1, img2), 1) - self.rgb_mean.to(img1.dtype).view(1, 6, 1, 1)
        height, width = x.shape[-2:]
        if self.training:
            if height % STRIDE or width % STRIDE:
                raise ValueError(f"training needs H and W multiples of {STRIDE}, got {height}x{width}")
            return [f * self.config.flow_scale for f in self.pyramid(x)]
        x, (top, left) = pad_to_stride(x)
        flow = self.full_resolution(self.pyramid(x)[0])
        return flow[:, :, top:top + height, left:left + width] * self.config.flow_scale


def check_input(img1: torch.Tensor, img2: torch.Tensor) -> None:
    """Raise ValueError naming what was received when the two frames cannot go in."""
    if img1.ndim != 4 or img1.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) frames, got {tuple(img1.shape)}")
    if img1.shape != img2.shape:
        raise ValueError(f"frames differ in shape: {tuple(img1.shape)} vs {tuple(img2.shape)}")
    if min(img1.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"frames must be at least {MIN_SIDE}x{MIN_SIDE}, got {img1.shape[-2]}x{img1.shape[-1]} (HxW)")


def upscaled_for_network(img1: torch.Tensor, img2: torch.Tensor, predict) -> torch.Tensor:
    """Flow for frames under MIN_SIDE: upsample both by the smallest integer factor that reaches it
    (bilinear), `predict(big1, big2)` -> (B, 2, fH, fW) flow, resize it back (for a factor of 2,
    the mean of each 2x2 block) and divide it by the factor. The real 50x50 Chairs pair needs it."""
    height, width = img1.shape[-2:]
    factor = -(-MIN_SIDE // min(height, width))
    big1, big2 = (F.interpolate(x.float(), scale_factor=factor, mode="bilinear", align_corners=False)
                  for x in (img1, img2))
    flow = predict(big1, big2).float()  # under autocast: resized in fp32
    return F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False) / factor


def pad_to_stride(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad up to a multiple of STRIDE, split evenly between opposite sides; returns the
    padded tensor and the (top, left) offset of the original in it, to crop the flow back.
    Even padding beat bottom/right, reflection and zero padding: benchmarks/README.md, "Padding"."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % STRIDE, -width % STRIDE
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        x = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="replicate")
    return x, (top, left)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_gflops(config: ModelConfig, height: int, width: int) -> float:
    """GFLOP (2 x multiply-adds) of every conv and transposed conv for one image of H x W,
    padded up to a multiple of 64 as the model does. Runs on the meta device: costs nothing."""
    macs = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight.shape[2] * module.weight.shape[3]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters into out_ch x k x k
            macs += inputs[0].numel() * module.out_channels * kernel // module.groups
        else:
            macs += output.numel() * (module.in_channels // module.groups) * kernel

    with torch.device("meta"):
        model = FlowNetS(config).eval()  # BatchNorm in training mode refuses 64x64's 1x1 conv6
    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    padded = (-(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE)
    model.pyramid(torch.empty(1, 6, *padded, device="meta"))
    for hook in hooks:
        hook.remove()
    return 2 * macs / 1e9
