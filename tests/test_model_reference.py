"""The reference's FlowNetSimple variant (arch="reference"): its layer list, shapes, loss,
recipe, weights files, and the one-line refusal to load one architecture's weights as the other."""

from __future__ import annotations

import json

import pytest
import torch

from flowcli.checkpoint import load_model, read_config, save_weights
from flowcli.errors import CheckpointError, TrainingError
from flowcli.inference.fold import fold_batchnorm
from flowcli.metrics import epe_map
from flowcli.model import RGB_MEAN, FlowNetS, ModelConfig, count_parameters
from flowcli.training.config import PRESETS, TrainConfig, preset_overrides, resolve_config
from flowcli.training.loop import optimize_step
from flowcli.training.setup import make_optimizer
from flowcli.training.loss import full_resolution_epe

# The reference's channels at width 1.0, as its description lists them.
ENC = {"conv1": 64, "conv2": 128, "conv3": 256, "conv3_1": 256, "conv4": 512, "conv4_1": 512,
       "conv5": 512, "conv5_1": 512, "conv6": 1024}
DEC = {"deconv5": 512, "deconv4": 256, "deconv3": 128, "deconv2": 64}


def reference_parameters(enc: dict, dec: dict, batch_norm: bool) -> int:
    """Count the reference's parameters from its layer list: (in, out, kernel) per layer."""
    convs = [(6, enc["conv1"], 7), (enc["conv1"], enc["conv2"], 5), (enc["conv2"], enc["conv3"], 5),
             (enc["conv3"], enc["conv3_1"], 3), (enc["conv3_1"], enc["conv4"], 3),
             (enc["conv4"], enc["conv4_1"], 3), (enc["conv4_1"], enc["conv5"], 3),
             (enc["conv5"], enc["conv5_1"], 3), (enc["conv5_1"], enc["conv6"], 3)]
    in5 = enc["conv5_1"] + dec["deconv5"]
    in4 = enc["conv4_1"] + dec["deconv4"] + 2
    in3 = enc["conv3_1"] + dec["deconv3"] + 2
    in2 = enc["conv2"] + dec["deconv2"] + 2
    deconvs = [(enc["conv6"], dec["deconv5"]), (in5, dec["deconv4"]), (in4, dec["deconv3"]), (in3, dec["deconv2"])]
    total = sum(i * o * k * k + (2 * o if batch_norm else o) for i, o, k in convs)  # bias, or BN's scale+shift
    total += sum(i * o * 4 * 4 for i, o in deconvs)  # 4x4, no bias
    total += sum(c * 2 * 3 * 3 for c in (in5, in4, in3, in2))  # predict_flow: 3x3 to 2, no bias
    total += 3 * 2 * 2 * 5 * 5  # three 5x5 flow upsamplings, no bias
    return total


def test_parameter_count_is_the_layer_lists_arithmetic():
    # width 1.0 by hand: encoder 14,612,544 + deconvs 14,555,136 + predict 2,374 x 18 + upsampling 300
    assert reference_parameters(ENC, DEC, False) == 29_210_712
    with torch.device("meta"):  # no memory, no init: only the shapes count
        full = FlowNetS(ModelConfig(arch="reference"))
        full_bn = FlowNetS(ModelConfig(arch="reference", batch_norm=True))
    assert count_parameters(full) == 29_210_712
    assert count_parameters(full_bn) == reference_parameters(ENC, DEC, True) == 29_210_712 - 3_776 + 2 * 3_776
    quarter = ({k: v // 4 for k, v in ENC.items()}, {k: v // 4 for k, v in DEC.items()})
    assert count_parameters(FlowNetS(ModelConfig(arch="reference", width=0.25))) == reference_parameters(*quarter, False)
    assert reference_parameters(*quarter, False) == 1_839_432
    assert not hasattr(full, "conv6_1") and not hasattr(full, "predict_flow6")


@pytest.mark.parametrize("size", [(384, 512), (64, 64), (100, 130)])
def test_eval_output_is_flow_at_the_input_size(size):
    torch.manual_seed(0)
    model = FlowNetS(ModelConfig(arch="reference", width=0.25)).eval()
    img = torch.rand(1, 3, *size)
    with torch.no_grad():
        assert model(img, img).shape == (1, 2, *size)


def test_train_mode_pyramid_is_flow2_to_flow5():
    model = FlowNetS(ModelConfig(arch="reference", width=0.25)).train()
    img = torch.rand(2, 3, 128, 192)
    assert [tuple(f.shape) for f in model(img, img)] == [(2, 2, 32 // s, 48 // s) for s in (1, 2, 4, 8)]


def test_epe_loss_is_the_metric_of_the_full_resolution_output():
    # by hand: flow2 is (3, 4) everywhere, so is its upsampling; the target is 0 on the left half
    # (error 5) and (3, 0) on the right half (error 4); with every pixel valid the mean is 4.5,
    # with the right half only, 4.
    flow2 = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    target = torch.zeros(1, 2, 16, 16)
    target[:, 0, :, 8:] = 3.0
    every = torch.ones(1, 16, 16, dtype=torch.bool)
    right = every.clone()
    right[:, :, :8] = False
    assert full_resolution_epe([flow2], target, every)[0].item() == pytest.approx(4.5)
    assert full_resolution_epe([flow2], target, right)[0].item() == pytest.approx(4.0)

    # and on a network: the training loss equals the EPE metric of the eval-mode output
    torch.manual_seed(1)
    model = FlowNetS(ModelConfig(arch="reference", width=0.25, flow_scale=1.0))
    img1, img2, flow = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128), 3 * torch.randn(2, 2, 64, 128)
    valid = torch.rand(2, 64, 128) > 0.3
    with torch.no_grad():
        loss, metrics = full_resolution_epe(model.train()(img1, img2), flow, valid)
        metric = epe_map(model.eval()(img1, img2), flow)[valid].mean()
    assert loss.item() == pytest.approx(metric.item(), rel=1e-5)
    assert metrics["epe"].item() == loss.item()


def test_a_training_step_runs_and_the_loss_falls_on_a_fixed_batch():
    torch.manual_seed(2)
    config = TrainConfig(arch="reference", width=0.25, loss="epe", flow_scale=1.0, lr=3e-4, optimizer="adam",
                         weight_decay=0.0)
    model = FlowNetS(config.model_config()).train()
    optimizer = make_optimizer(model, config)
    img1, img2 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    flow = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(2, 2, 64, 64).contiguous()
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    losses = [optimize_step(model, model, optimizer, (img1, img2, flow, valid), clip=0.0, amp_dtype=None,
                            loss="epe")[0].item() for _ in range(4)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.97 * losses[0], losses


@pytest.mark.parametrize("arch", ["flownets", "reference"])
def test_weights_round_trip_with_their_arch(tmp_path, arch):
    config = ModelConfig(arch=arch, width=0.25, batch_norm=True, flow_scale=1.0)
    model = load_model("random", config=config, seed=4)
    save_weights(tmp_path / "w.safetensors", model)
    assert read_config(tmp_path / "w.safetensors") == config
    again = load_model(tmp_path / "w.safetensors", config=config)
    img = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(again(img, img), model(img, img))
        assert torch.allclose(fold_batchnorm(model)(img, img), model(img, img), atol=1e-4)


def test_files_without_an_arch_load_as_flownets():
    assert ModelConfig.from_json('{"batch_norm": true, "flow_scale": 20.0, "width": 0.25}').arch == "flownets"


@pytest.mark.parametrize("held, asked", [("flownets", "reference"), ("reference", "flownets")])
def test_one_architecture_does_not_load_as_the_other(tmp_path, held, asked):
    path = tmp_path / "w.safetensors"
    save_weights(path, FlowNetS(ModelConfig(arch=held, width=0.25)))
    with pytest.raises(CheckpointError) as caught:
        load_model(path, config=ModelConfig(arch=asked, width=0.25))
    assert str(caught.value) == (f"{path}: holds a {held!r} network, but arch={asked}: weights of one "
                                 f"architecture do not load into the other ({held!r} and {asked!r} differ in their layers)")
    with pytest.raises(CheckpointError, match=f"holds a {held!r} network, but arch={asked}:"):
        resolve_config(None, init=path, arch=asked)
    with pytest.raises(CheckpointError, match=f"holds a {held!r} network, but arch={asked}:"):
        resolve_config("reference" if asked == "reference" else "flownets-adam", init=path)
    assert resolve_config(None, init=path).arch == held  # no arch asked for: the file's


def test_cli_init_of_the_other_arch_is_one_line(run_cli, tiny_chairs, tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, FlowNetS(ModelConfig(width=0.25)))
    for args in (["--arch", "reference"], ["--preset", "reference"]):
        result = run_cli("train", tiny_chairs, "-o", tmp_path / "run", "--init", path, *args)
        assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
            f"error: {path}: holds a 'flownets' network, but --arch reference: weights of one architecture "
            "do not load into the other ('flownets' and 'reference' differ in their layers)"]
    assert not (tmp_path / "run").exists()


def test_without_mean_subtraction_the_network_sees_the_images_as_they_are():
    torch.manual_seed(5)
    plain = FlowNetS(ModelConfig(arch="reference", width=0.25, subtract_mean=False)).eval()
    normalised = FlowNetS(ModelConfig(arch="reference", width=0.25)).eval()
    normalised.load_state_dict(plain.state_dict())
    img1, img2 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(plain(img1, img2), normalised(img1 + mean, img2 + mean), atol=1e-5)


def test_bad_arch_and_loss_name_the_field():
    with pytest.raises(ValueError, match="arch='paper': choose flownets or reference"):
        ModelConfig(arch="paper")
    with pytest.raises(TrainingError, match="arch='paper': choose flownets or reference"):
        TrainConfig(arch="paper")
    with pytest.raises(TrainingError, match="loss='l1': choose multiscale or epe"):
        TrainConfig(loss="l1")


def test_the_reference_preset_is_the_reference_recipe_and_explicit_options_win():
    ref = PRESETS["reference"]
    assert (ref.arch, ref.loss, ref.flow_scale, ref.optimizer, ref.lr, ref.schedule, ref.batch_size, ref.epochs,
            ref.split, ref.augment, ref.crop, ref.width) == (
        "reference", "epe", 1.0, "adam", 1e-4, "constant", 8, 20, "reference", False, (384, 512), 1.0)
    old = PRESETS["flownets-adam"]
    assert (old.arch, old.loss, old.flow_scale, old.optimizer) == ("flownets", "multiscale", 20.0, "adam")
    assert resolve_config("reference", augment=True).augment is True
    assert preset_overrides("reference", None, augment=True, epochs=20, lr=None) == {"augment": True}


def test_a_reference_run_records_its_recipe_and_overrides(run_cli, tiny_chairs, tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", tiny_chairs, "-o", run, "--preset", "reference", "--augment", "--epochs", 1,
                     "--batch-size", 4, "--crop", "64x64", "--width", 0.25)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["overrides"] == {"augment": True, "batch_size": 4, "crop": [64, 64], "epochs": 1, "width": 0.25}
    expected = PRESETS["reference"].with_overrides(augment=True, batch_size=4, crop=(64, 64), epochs=1, width=0.25)
    assert TrainConfig.from_json(json.dumps(saved["train"])) == expected
    assert read_config(run / "best.safetensors") == ModelConfig(arch="reference", width=0.25, flow_scale=1.0)
