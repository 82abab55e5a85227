"""The forward-backward check (flowcli.inference.occlusion): Sundaram's criterion against a hand
computation, and the check on a generated pair with known occlusion using the shipped weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowcli.data.occlusion import true_occlusion
from flowcli.data.scenes import SynthConfig
from flowcli.data.synth import SceneGenerator
from flowcli.inference.occlusion import UNKNOWN, CheckedFlow, check_arrays

pytestmark = pytest.mark.usefixtures("one_thread")


def constant_flows(height=12, width=20, u=4.0):
    """Forward u px right everywhere; backward -u everywhere, except an occluding block (columns
    10-13) that stands still in image 2, and columns 16 and 17 off by 0.8 and 0.9 px."""
    forward = np.zeros((height, width, 2), np.float32)
    forward[..., 0] = u
    backward = np.zeros_like(forward)
    backward[..., 0] = -u
    backward[:, 10:14, 0] = 0.0
    backward[:, 16, 0] = -u + 0.8
    backward[:, 17, 0] = -u + 0.9
    return forward, backward


def test_sundaram_check_on_hand_made_flows():
    forward, backward = constant_flows()
    checked = check_arrays(forward, backward)
    occluded, confidence = checked.occluded, checked.confidence
    # column x lands on x + 4 (an exact pixel, so sampling the backward flow is exact there)
    # x + 4 in 10..13: backward 0, residual 4^2 = 16 > 0.01 (16 + 0) + 0.5 = 0.66
    assert occluded[:, 6:10].all()
    assert np.allclose(confidence[:, 6:10], 2 ** (-16 / 0.66), atol=1e-9)
    # x + 4 = 16: off by 0.8: residual 0.64 <= 0.01 (16 + 3.2^2) + 0.5 = 0.7624 -> kept
    assert not occluded[:, 12].any()
    assert np.allclose(confidence[:, 12], 2 ** (-0.64 / 0.7624), atol=1e-5)
    # x + 4 = 17: off by 0.9: residual 0.81 > 0.01 (16 + 3.1^2) + 0.5 = 0.7561 -> occluded
    assert occluded[:, 13].all()
    assert np.allclose(confidence[:, 13], 2 ** (-0.81 / 0.7561), atol=1e-5)
    # x + 4 > 19: the match leaves the frame -> occluded, confidence 0
    assert occluded[:, 16:].all() and (confidence[:, 16:] == 0).all()
    # everything else agrees exactly: confidence 1
    rest = np.r_[0:6, 10:12, 14:16]
    assert not occluded[:, rest].any() and (confidence[:, rest] == 1).all()
    # the mask is confidence below one half (Sundaram's threshold), out-of-frame pixels included
    assert np.array_equal(occluded, confidence < 0.5)


def test_the_check_samples_the_backward_flow_where_the_pixel_lands():
    """Half-pixel motion: the backward flow is read between two columns (bilinear), not at x."""
    forward = np.zeros((4, 8, 2), np.float32)
    forward[..., 0] = 0.5
    backward = np.zeros_like(forward)
    backward[:, :4, 0] = -0.5
    backward[:, 4:, 0] = 3.0  # from column 4 on the backward flow disagrees
    checked = check_arrays(forward, backward)
    # x = 3 lands on 3.5: w_b = (-0.5 + 3) / 2 = 1.25, residual 1.75^2 = 3.06 > 0.01 (0.25 + 1.5625) + 0.5
    assert checked.occluded[:, 3].all() and not checked.occluded[:, :3].any()
    assert math.isclose(float(checked.confidence[0, 3]), 2 ** (-1.75**2 / (0.01 * (0.25 + 1.5625) + 0.5)), rel_tol=1e-5)


def test_masked_flow_sets_occluded_pixels_to_unknown():
    forward, backward = constant_flows()
    checked = check_arrays(forward, backward)
    masked = checked.masked_flow()
    assert (masked[checked.occluded] == np.float32(UNKNOWN)).all()
    assert np.array_equal(masked[~checked.occluded], forward[~checked.occluded])


def test_fb_check_on_a_generated_pair_with_known_occlusion_beats_a_random_mask():
    """Shipped weights on one small generated pair: a random mask marking as many pixels as are truly
    occluded has expected precision = recall = F1 = that share; the check must do much better, and
    its confidence must be lower on the occluded pixels."""
    from flowcli import estimate_flow

    config = SynthConfig(height=128, width=192)
    scene = SceneGenerator(config, seed=11).render(1)
    truth = true_occlusion(scene.flow, scene.layers1, scene.layers2)[0].numpy()
    share = truth.mean()
    assert 0.03 < share < 0.5
    to_uint8 = lambda t: (t[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()  # noqa: E731
    checked = estimate_flow(to_uint8(scene.img1), to_uint8(scene.img2), device="cpu", fb_check=True)
    assert isinstance(checked, CheckedFlow)
    assert checked.flow.shape == (128, 192, 2) and checked.occluded.shape == checked.confidence.shape == (128, 192)
    tp = (checked.occluded & truth).sum()
    precision, recall = tp / checked.occluded.sum(), tp / truth.sum()
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 > 2 * share, (f1, share, precision, recall)
    assert checked.confidence[truth].mean() < checked.confidence[~truth].mean() - 0.2
    # the plain call still returns the forward flow as an array, the same one
    plain = estimate_flow(to_uint8(scene.img1), to_uint8(scene.img2), device="cpu")
    assert isinstance(plain, np.ndarray) and np.allclose(plain, checked.flow, atol=1e-4)


def test_fb_check_composes_with_tta_and_passes_in_one_batch():
    """With --tta and --passes the predictor still gets one batch holding both directions."""
    from flowcli import estimate_flow
    from flowcli.inference.engine import load_predictor

    predictor = load_predictor("random", device="cpu", tta="hflip", passes=2)
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(predictor, name)

        def predict_uint8(self, a, b):
            seen.append((a.shape, b.shape, np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0])))
            return predictor.predict_uint8(a, b)

    rng = np.random.default_rng(0)
    img1, img2 = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    checked = estimate_flow(img1, img2, predictor=Spy(), fb_check=True)
    assert seen == [((2, 64, 64, 3), (2, 64, 64, 3), True)]
    forward = estimate_flow(img1, img2, predictor=predictor)
    backward = estimate_flow(img2, img1, predictor=predictor)
    assert np.allclose(checked.flow, forward, atol=1e-4) and np.allclose(checked.backward, backward, atol=1e-4)


def test_fb_check_with_max_side_checks_at_the_input_size():
    """Both flows are resized back to the input's size before the check: mask and confidence match it."""
    from flowcli import estimate_flow
    from flowcli.inference.engine import load_predictor
    predictor = load_predictor("random", device="cpu")
    rng = np.random.default_rng(1)
    img1, img2 = (rng.integers(0, 256, (128, 160, 3), dtype=np.uint8) for _ in range(2))
    checked = estimate_flow(img1, img2, predictor=predictor, fb_check=True, max_side=80)
    assert checked.flow.shape == (128, 160, 2) and checked.occluded.shape == (128, 160)
    assert np.allclose(checked.flow, estimate_flow(img1, img2, predictor=predictor, max_side=80), atol=1e-4)
    expected = check_arrays(checked.flow, checked.backward)
    assert np.array_equal(checked.occluded, expected.occluded)
