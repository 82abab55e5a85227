"""Grow trained FlowNetS weights to a wider network that computes the same flow (Net2WiderNet,
Chen et al., ICLR 2016). Imports torch and the model module only.

Every layer of width w becomes k times as many channels at width k*w: each channel is copied k
times (its conv filter and bias, or its BatchNorm parameters and statistics), and every layer that reads a
widened group gets the old input weights split between the copies with random fractions that sum
to one, so the sum it computes is unchanged. Unequal fractions matter: with equal ones the copies
receive identical updates under Adam and stay copies; with unequal ones they drift apart once
training changes the outgoing weights, and the extra channels start learning.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .model import ENCODER_CHANNELS, ModelConfig

ENCODER = tuple(name for name in ENCODER_CHANNELS if name != "conv6_1")  # shared by both layouts
FLOW = 2  # an upsampled coarse flow in a decoder's input: never widened


def input_groups(arch: str) -> dict[str, tuple]:
    """What each layer reads, in channel order: a layer name (its widened output) or FLOW."""
    groups: dict[str, tuple] = {"conv1": (6,)}
    groups.update({layer: (previous,) for previous, layer in zip(ENCODER, ENCODER[1:])})
    if arch == "flownets":
        groups["conv6_1"] = ("conv6",)
        coarsest, level5 = "conv6_1", ("conv5_1", "deconv5", FLOW)
        flow_at = {5: "predict_flow6", 4: "predict_flow5", 3: "predict_flow4", 2: "predict_flow3"}
    else:  # "reference": no conv6_1 and no flow6; level 5 reads no coarser flow
        coarsest, level5 = "conv6", ("conv5_1", "deconv5")
        flow_at = {4: "predict_flow5", 3: "predict_flow4", 2: "predict_flow3"}
    decoder_inputs = {5: (coarsest,), 4: level5, 3: ("conv4_1", "deconv4", FLOW),
                      2: ("conv3_1", "deconv3", FLOW)}
    for level, reads in decoder_inputs.items():
        groups[f"deconv{level}"] = reads
        if level in flow_at:
            groups[flow_at[level]] = reads
    groups["predict_flow2"] = ("conv2", "deconv2", FLOW)
    return groups


def widen(state: dict[str, torch.Tensor], config: ModelConfig, width: float, *,
          seed: int = 0) -> dict[str, torch.Tensor]:
    """`state` (weights of `config`) grown to `width`, an integer multiple of config.width; the
    returned network's flow equals the original's up to float rounding, in eval and train mode."""
    if config.upsampler != "bilinear":
        raise ValueError("the convex upsampler's head does not grow: widen a file without it, then add it "
                         "(--upsampler convex)")
    factor = round(width / config.width)
    if factor < 1 or abs(factor * config.width - width) > 1e-9:
        raise ValueError(f"width={width}: weights of width {config.width} grow only to a whole "
                         f"multiple of it ({config.width * 2:g}, {config.width * 3:g}, ...)")
    groups = input_groups(config.arch)
    widened = [name for name in groups if not name.startswith("predict_flow")]  # those output 2 channels
    old_channels = {name: _out_channels(state, name) for name in widened}
    target = replace(config, width=width)
    for name, channels in old_channels.items():
        if target.channels(name) != factor * channels:
            raise ValueError(f"width={width}: {name} would have {target.channels(name)} channels, "
                             f"not {factor} x {channels}; choose a width whose layers are whole multiples")
    generator = torch.Generator().manual_seed(seed)
    splits = {name: _split(factor, old_channels[name], generator) for name in widened}

    grown = dict(state)
    for name, reads in groups.items():
        transposed = name.startswith("deconv")
        key = f"{name}.0.weight" if name in splits else f"{name}.weight"
        weight = state[key]
        in_dim, out_dim = (0, 1) if transposed else (1, 0)
        weight = _widen_inputs(weight, in_dim, reads, old_channels, splits)
        if name in splits:
            weight = _copy(weight, out_dim, factor)
            per_channel = [f"{name}.0.bias"] + [f"{name}.1.{stat}" for stat in  # conv bias without BatchNorm
                                                ("weight", "bias", "running_mean", "running_var")]
            for other in per_channel:
                if other in state:
                    grown[other] = _copy(state[other], 0, factor)
        grown[key] = weight.contiguous()
    return grown


def _out_channels(state: dict[str, torch.Tensor], name: str) -> int:
    weight = state[f"{name}.0.weight"]
    return weight.shape[1] if name.startswith("deconv") else weight.shape[0]


def _split(factor: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """(factor, channels) fractions, each column summing to one, none equal to another."""
    raw = torch.rand(factor, channels, generator=generator, dtype=torch.float64) + 0.5
    return (raw / raw.sum(0)).float()


def _copy(tensor: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Channel j of the result is channel j mod C of `tensor` along `dim`."""
    return torch.cat([tensor] * factor, dim)


def _widen_inputs(weight: torch.Tensor, dim: int, reads: tuple, old_channels: dict[str, int],
                  splits: dict[str, torch.Tensor]) -> torch.Tensor:
    parts, offset = [], 0
    for group in reads:
        if group in splits:
            channels = old_channels[group]
            old = weight.narrow(dim, offset, channels)
            shape = [1] * weight.ndim
            shape[dim] = channels
            parts += [old * fraction.view(shape) for fraction in splits[group]]
        else:
            channels = group
            parts.append(weight.narrow(dim, offset, channels))
        offset += channels
    if offset != weight.shape[dim]:
        raise ValueError(f"a layer reads {weight.shape[dim]} channels, the layout says {offset}")
    return torch.cat(parts, dim)
