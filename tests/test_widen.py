"""Growing trained weights to a wider network: the same flow first, then copies that can drift apart;
training from narrower weights starts from exactly that."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from flowcli.checkpoint import save_weights
from flowcli.errors import CheckpointError
from flowcli.model import FlowNetS, ModelConfig
from flowcli.training.config import TrainConfig
from flowcli.training.loop import train
from flowcli.widen import widen


def trained_looking(config: ModelConfig, seed: int) -> FlowNetS:
    """A network whose biases, BatchNorm parameters and statistics are not the identity, as trained ones'."""
    torch.manual_seed(seed)
    model = FlowNetS(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:  # zeros at initialisation
            module.bias.data.uniform_(-0.5, 0.5)
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data.uniform_(-0.5, 0.5)
            module.running_var.data.uniform_(0.5, 2.0)
    for name, module in model.named_children():
        if name.startswith("predict_flow"):  # their std-1e-3 start would hide a wrong decoder input
            torch.nn.init.normal_(module.weight, std=0.05)
    return model


@pytest.mark.parametrize("arch, width, factor, batch_norm", [
    ("flownets", 0.25, 2, True), ("reference", 0.125, 3, True), ("flownets", 0.125, 2, False)])
def test_the_grown_network_computes_the_same_flow_in_both_modes(arch, width, factor, batch_norm):
    narrow_config = ModelConfig(width=width, batch_norm=batch_norm, arch=arch)
    narrow = trained_looking(narrow_config, seed=1)
    wide = FlowNetS(replace(narrow_config, width=width * factor))
    wide.load_state_dict(widen(narrow.state_dict(), narrow_config, width * factor))  # strict: every key, shape
    img1, img2 = torch.rand(2, 3, 128, 192), torch.rand(2, 3, 128, 192)
    with torch.no_grad():
        narrow.eval(), wide.eval()
        flow = narrow(img1, img2)
        assert flow.abs().mean() > 1  # a flow worth comparing
        torch.testing.assert_close(wide(img1, img2), flow, rtol=1e-4, atol=1e-4 * flow.abs().max().item())
        narrow.train(), wide.train()  # BatchNorm on batch statistics: copies have their channel's
        for a, b in zip(wide(img1, img2), narrow(img1, img2)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    assert sum(p.numel() for p in wide.parameters()) > (factor ** 2 - 1) * sum(p.numel() for p in narrow.parameters())


def test_copies_read_by_a_layer_get_unequal_fractions_of_its_old_weights():
    config = ModelConfig(width=0.25, batch_norm=True)
    narrow = trained_looking(config, seed=2).state_dict()
    grown = widen(narrow, config, 0.5, seed=5)
    old = narrow["conv3.0.weight"]  # reads conv2's 32 channels; its 64 output channels are copied twice
    new = grown["conv3.0.weight"]
    assert torch.equal(new[:64], new[64:])
    first, second = new[:64, :32] / old, new[:64, 32:] / old
    torch.testing.assert_close(first + second, torch.ones_like(old))
    fractions = first[:, :, 0, 0]
    assert torch.allclose(fractions, fractions[:1].expand_as(fractions))  # one fraction per read channel
    assert (fractions[0] - 0.5).abs().min() > 1e-4 and fractions.std() > 0.05  # not halves, not one value
    assert not torch.equal(grown["conv3.0.weight"], widen(narrow, config, 0.5, seed=6)["conv3.0.weight"])


def test_a_width_that_is_no_whole_multiple_is_refused():
    config = ModelConfig(width=0.25, batch_norm=True)
    with pytest.raises(ValueError, match=r"width=0.6: weights of width 0.25 grow only to a whole multiple"):
        widen(FlowNetS(config).state_dict(), config, 0.6)


TINY = TrainConfig(epochs=1, batch_size=2, crop=(64, 64), width=0.5, steps_per_epoch=1, synth_size=(64, 96),
                   val_count=1, schedule="constant", lr=1e-7, seed=9, batch_norm=True, freeze_bn=True)


def test_training_from_narrower_weights_starts_from_them_grown(tmp_path):
    narrow_config = ModelConfig(width=0.25, batch_norm=True)
    narrow = trained_looking(narrow_config, seed=3)
    save_weights(tmp_path / "narrow.safetensors", narrow)
    train(TINY.with_overrides(init=str(tmp_path / "narrow.safetensors")), output=tmp_path / "run")
    trained = load_file(str(tmp_path / "run" / "last.safetensors"))
    expected = widen(narrow.state_dict(), narrow_config, 0.5, seed=TINY.seed)
    assert trained.keys() == expected.keys()
    for key, tensor in expected.items():  # one Adam step at lr 1e-7 moves a weight by ~1e-7
        torch.testing.assert_close(trained[key], tensor, rtol=0, atol=1e-6)


@pytest.mark.parametrize("held, asked, message", [
    (0.25, 0.6, r"narrow.safetensors: width=0.6: weights of width 0.25 grow only to a whole multiple"),
    (0.5, 0.25, r"holds ModelConfig.width=0.5.*asks for ModelConfig.width=0.25"),
])
def test_weights_that_cannot_grow_to_the_asked_width_are_refused(tmp_path, held, asked, message):
    save_weights(tmp_path / "narrow.safetensors", FlowNetS(ModelConfig(width=held, batch_norm=True)))
    config = TINY.with_overrides(width=asked, init=str(tmp_path / "narrow.safetensors"))
    with pytest.raises(CheckpointError, match=message):
        train(config, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()
