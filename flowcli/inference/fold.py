"""BatchNorm folding: an inference copy of a FlowNetS whose convolutions absorb their BatchNorm."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..model import FlowNetS


def fold_batchnorm(model: FlowNetS) -> FlowNetS:
    """An eval-mode copy of `model` with every Conv2d+BatchNorm2d pair folded into one conv with bias.

    The copy is a plain FlowNetS whose config says batch_norm=False, so it runs, saves and reloads
    like any other model; its outputs equal the original's eval-mode outputs up to float rounding.
    Models without BatchNorm are copied unchanged. The caller's model is not modified.
    """
    state = dict(model.state_dict())
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                weight, bias = _folded_conv(conv, bn)
                for key in [k for k in state if k.startswith(f"{prefix}.{i + 1}.")]:
                    del state[key]
                state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"] = weight, bias
    config = dataclasses.replace(model.config, batch_norm=False)
    reference = next(model.parameters())
    # The random init is overwritten below; the caller's RNG is left as it was. (Not on the meta
    # device: that imports torch._dynamo, 1.1 s of every command's start-up.)
    with torch.random.fork_rng(devices=[]):
        folded = FlowNetS(config)
    folded = folded.to(reference.device, reference.dtype)
    folded.load_state_dict(state, strict=True)
    originals = dict(model.named_buffers())
    for name, buffer in folded.named_buffers():  # non-persistent buffers (rgb_mean) are not in state
        buffer.copy_(originals[name])
    return folded.eval()


@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of conv followed by bn (running statistics), computed in float64."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)  # (C_out,)
    conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = beta + (conv_bias - mean) * scale
    dtype = conv.weight.dtype
    return weight.to(dtype), bias.to(dtype)
