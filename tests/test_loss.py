"""FlowNet's multi-scale loss against hand computation: level weights, their normalisation, and which
downsampled target pixels count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowcli.training.loss import downsample_target, effective_weights, multiscale_epe, target_pyramid

# FlowNet (Dosovitskiy et al. 2015; FlowNetPytorch): flow2 .. flow6 weigh 0.005, 0.01, 0.02, 0.08, 0.32,
# each summed over its pixels, so with 1/4 the pixels per level: 0.005, 0.0025, 0.00125, 0.00125, 0.00125
# of a sum of 0.01125, i.e. 4/9, 2/9 and 1/9 for each coarser level.
HAND_WEIGHTS = [4 / 9, 2 / 9, 1 / 9, 1 / 9, 1 / 9]


def constant_pyramid(errors: list[float], size: int = 32) -> list[torch.Tensor]:
    """flow2 .. flow6 at size, size/2, ...; level l predicts (0.6, 0.8) * errors[l] everywhere."""
    return [torch.tensor([0.6, 0.8]).view(1, 2, 1, 1) * e * torch.ones(2, 1, size >> l, size >> l)
            for l, e in enumerate(errors)]


def test_effective_weights_are_the_paper_weights_times_pixel_share_normalised():
    assert effective_weights() == pytest.approx(HAND_WEIGHTS, rel=1e-12)
    assert effective_weights(2) == pytest.approx([2 / 3, 1 / 3], rel=1e-12)


def test_loss_weighs_each_level_by_its_weight():
    errors = [1.0, 2.0, 4.0, 8.0, 16.0]  # each level's EPE against a zero target: |(0.6, 0.8) e| = e
    flow, valid = torch.zeros(2, 2, 128, 128), torch.ones(2, 128, 128, dtype=torch.bool)
    loss, metrics = multiscale_epe(constant_pyramid(errors), flow, valid)
    assert loss.item() == pytest.approx(4 / 9 * 1 + 2 / 9 * 2 + (4 + 8 + 16) / 9, rel=1e-6)  # = 4.0
    assert metrics["epe"].item() == pytest.approx(1.0, rel=1e-6)  # flow2, upsampled to full size
    one_level = [torch.zeros_like(p) for p in constant_pyramid(errors)]
    one_level[4] = constant_pyramid(errors)[4]
    assert multiscale_epe(one_level, flow, valid)[0].item() == pytest.approx(16 / 9, rel=1e-6)


def numpy_downsample(flow: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2, H, W), (B, H, W) -> block means of the valid vectors (invalid ones count as zero), and
    a coarse validity that needs every fine pixel of the block valid."""
    b, _, h, w = flow.shape
    blocks = (flow * valid[:, None]).reshape(b, 2, h // factor, factor, w // factor, factor)
    coarse_valid = valid.reshape(b, h // factor, factor, w // factor, factor).all(axis=(2, 4))
    return blocks.mean(axis=(3, 5)), coarse_valid


def test_a_coarse_pixel_is_valid_only_if_all_its_fine_pixels_are():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, size=(2, 2, 16, 24)).astype(np.float32)
    valid = rng.random((2, 16, 24)) > 0.03  # a few invalid pixels: some blocks lose one, most lose none
    for factor in (2, 4, 8):
        size = (16 // factor, 24 // factor)
        coarse, coarse_valid = downsample_target(torch.from_numpy(flow), torch.from_numpy(valid), size)
        expected, expected_valid = numpy_downsample(flow, valid, factor)
        assert 0 < expected_valid.sum() < expected_valid.size, factor  # both kinds of block occur
        np.testing.assert_array_equal(coarse_valid.numpy(), expected_valid)
        np.testing.assert_allclose(coarse.numpy()[expected_valid[:, None].repeat(2, 1)],
                                   expected[expected_valid[:, None].repeat(2, 1)], rtol=1e-5, atol=1e-6)


def test_an_invalid_fine_pixel_keeps_its_whole_coarse_pixel_out_of_the_loss():
    flow = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1) * torch.ones(1, 2, 8, 8)  # |target| = 5 everywhere
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    valid[0, 1, 2] = False  # in the coarse 2x2-block pixel (0, 1)
    flow[0, :, 1, 2] = 1e6  # an unknown target: must not leak into any level
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, :, 0, 1] = 100.0  # wrong only where the target is partly unknown
    loss, _ = multiscale_epe([pred], flow, valid)
    assert loss.item() == pytest.approx(5.0, rel=1e-6)  # every counted coarse pixel is off by exactly |(3, 4)|


@pytest.mark.parametrize("some_invalid", [False, True])
def test_the_target_pyramid_pools_each_level_from_the_one_before_to_the_same_values(some_invalid):
    rng = np.random.default_rng(1)
    flow = torch.from_numpy(rng.normal(0, 3, size=(2, 2, 64, 96)).astype(np.float32))
    valid = torch.from_numpy(rng.random((2, 64, 96)) > (0.002 if some_invalid else -1))
    sizes = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]  # 2x3 -> 1x2 does not divide: from full resolution
    for (coarse, coarse_valid), size in zip(target_pyramid(flow, valid, sizes), sizes):
        expected, expected_valid = downsample_target(flow, valid, size)
        assert coarse.shape[-2:] == size
        torch.testing.assert_close(coarse_valid, expected_valid)
        torch.testing.assert_close(coarse[expected_valid[:, None].expand_as(coarse)],
                                   expected[expected_valid[:, None].expand_as(expected)], rtol=1e-5, atol=1e-5)
    assert not some_invalid or not target_pyramid(flow, valid, sizes)[0][1].all()  # a level lost a pixel


def test_the_full_resolution_loss_takes_a_full_size_level_as_it_is_and_upsamples_flow2():
    """A convex network's finest level is already full size: its loss is its EPE against the target,
    pixel for pixel (numpy); flow2 at 1/4 is upsampled first (a constant stays that constant)."""
    from flowcli.training.loss import full_resolution_epe

    generator = torch.Generator().manual_seed(4)
    target = torch.randn(2, 2, 64, 64, generator=generator)
    valid = torch.rand(2, 64, 64, generator=generator) > 0.2
    finest = torch.randn(2, 2, 64, 64, generator=generator)
    err = np.linalg.norm((finest - target).numpy(), axis=1)
    want = err[valid.numpy()].mean()
    for level0 in (finest, finest.bfloat16()):  # under autocast the level may come in bf16
        loss = full_resolution_epe([level0], target, valid)[0]
        assert loss.item() == pytest.approx(want, rel=1e-2 if level0.dtype == torch.bfloat16 else 1e-6)
    everywhere = torch.ones(2, 64, 64, dtype=torch.bool)
    flow2 = constant_pyramid([5.0], size=16)  # 16x16 for a 64x64 target
    assert full_resolution_epe(flow2, torch.zeros_like(target), everywhere)[0].item() == pytest.approx(5.0, rel=1e-6)
    # the training-time EPE of the multi-scale loss reads the same full-size level
    coarse = constant_pyramid([0.0] * 5, size=64)[1:]  # flow3 .. flow6 at 32 .. 4
    assert multiscale_epe([finest, *coarse], target, valid)[1]["epe"].item() == pytest.approx(want, rel=1e-6)
