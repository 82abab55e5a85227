"""The guided filter after --passes: removes speckle inside regions, keeps flow edges where image 1 has them."""

from __future__ import annotations

import pytest
import torch

from flowcli.inference.guided import guided_filter

torch.set_num_threads(1)


def test_a_constant_field_stays_constant():
    guide = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    flow = torch.tensor([3.0, -1.5]).view(1, 2, 1, 1).expand(2, 2, 70, 90)
    torch.testing.assert_close(guided_filter(guide, flow), flow, atol=1e-4, rtol=0)


def test_noise_is_smoothed_and_an_edge_shared_with_the_image_is_kept():
    height, width = 64, 128
    guide = torch.tensor([0.2, 0.5, 0.3]).view(1, 3, 1, 1).repeat(1, 1, height, width)
    guide[..., width // 2:] = torch.tensor([0.7, 0.2, 0.4]).view(1, 3, 1, 1)  # image 1: two flat colours
    truth = torch.zeros(1, 2, height, width)
    truth[:, 0, :, width // 2:] = 5.0  # the right region moves 5 px
    noisy = truth + 0.5 * torch.randn(1, 2, height, width, generator=torch.Generator().manual_seed(1))
    smoothed = guided_filter(guide, noisy)
    inside = (..., slice(8, -8), slice(8, width // 2 - 8))
    assert (smoothed - truth)[inside].std() < (noisy - truth)[inside].std() / 4  # measured: 0.02 of it
    beside_edge = (..., slice(8, -8), slice(width // 2 - 2, width // 2 + 2))
    assert (smoothed - truth)[beside_edge].abs().max() < 0.6  # measured 0.31; a 25 px box filter: 2.45


def test_bad_arguments_are_refused():
    guide, x = torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="radius and subsample must be >= 1 and eps > 0"):
        guided_filter(guide, x, radius=0)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(guide, x, eps=0.0)
    with pytest.raises(ValueError, match="3 colour channels, got 1"):
        guided_filter(guide[:, :1], x)
