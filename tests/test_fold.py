"""BatchNorm folding: the folded copy computes what the original computes, and leaves it alone."""

from __future__ import annotations

import torch
from torch import nn

from flowcli.inference.fold import fold_batchnorm
from flowcli.model import FlowNetS


def frames(batch: int, height: int, width: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator),
            torch.rand(batch, 3, height, width, generator=generator))


def test_fold_batchnorm_keeps_outputs_and_leaves_the_original(bn_model):
    model = bn_model()
    img1, img2 = frames(2, 70, 100)
    with torch.no_grad():
        expected = model(img1, img2)
        rng = torch.get_rng_state()
        folded = fold_batchnorm(model)
        assert torch.equal(rng, torch.get_rng_state())  # no hidden random init
        got = folded(img1, img2)
    assert expected.abs().max() > 0.1  # not a trivially zero comparison
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert folded.config.batch_norm is False and not folded.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.conv1[0].bias is not None
    # the original still has its BatchNorm, and the folded weights load into a plain model
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    FlowNetS(folded.config).load_state_dict(folded.state_dict(), strict=True)


def test_loading_the_shipped_weights_does_not_import_torch_dynamo():
    # the meta device's init imports torch._dynamo: 1.1 s of every command's start-up
    import subprocess
    import sys

    code = ("import sys; from flowcli.inference.engine import load_predictor; load_predictor(None, device='cpu'); "
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
