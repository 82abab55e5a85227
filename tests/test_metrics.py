"""flowcli.metrics: EPE and 1/3/5 px accuracies on hand-computed errors, masking, the reference formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowcli.metrics import epe_map, flow_metrics, flow_metrics_np

# Error vectors (pred - gt) with hand-known lengths: 0, 0.5 (0.3, 0.4), 2 (1.2, 1.6), 4 (2.4, 3.2), 10 (6, 8).
ERRORS = [(0.0, 0.0), (0.3, 0.4), (1.2, 1.6), (2.4, 3.2), (6.0, 8.0)]
LENGTHS = [0.0, 0.5, 2.0, 4.0, 10.0]
EXPECTED = {
    "epe": sum(LENGTHS) / 5,  # 16.5 / 5 = 3.3
    "1px": 2 / 5,  # 0 and 0.5
    "3px": 3 / 5,  # + 2
    "5px": 4 / 5,  # + 4
    "valid_pixels": 5,
}


def hand_case(masked_error: float = 1e6):
    """(pred, gt, valid) as (1, 2, 2, 3) tensors: 5 known errors + 1 masked pixel with a huge error."""
    gt = torch.tensor([[[1.0, -2.0, 0.5], [3.0, 0.0, 7.0]],
                       [[0.0, 4.0, -1.0], [2.0, 5.0, -3.0]]])[None]  # (1, 2, 2, 3)
    offsets = torch.zeros(1, 2, 2, 3)
    for index, (du, dv) in enumerate(ERRORS):
        y, x = divmod(index, 3)
        offsets[0, 0, y, x], offsets[0, 1, y, x] = du, dv
    offsets[0, :, 1, 2] = masked_error
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    valid[0, 1, 2] = False
    return gt + offsets, gt, valid


def test_epe_map_gives_the_hand_lengths():
    pred, gt, _ = hand_case(masked_error=0.0)
    errors = epe_map(pred, gt)
    assert errors.shape == (1, 2, 3)
    assert errors.flatten()[:5].tolist() == pytest.approx(LENGTHS, abs=1e-6)
    assert errors[0, 1, 2].item() == 0.0


@pytest.mark.parametrize("masked_error", [0.0, 1e6, float("inf")])
def test_masked_pixels_do_not_change_any_metric(masked_error):
    pred, gt, valid = hand_case(masked_error)
    result = flow_metrics(pred, gt, valid)
    assert result["valid_pixels"] == 5
    for key in ("epe", "1px", "3px", "5px"):
        assert result[key] == pytest.approx(EXPECTED[key], abs=1e-6), key


def test_unmasked_huge_error_does_change_the_metrics():
    pred, gt, _ = hand_case(masked_error=100.0)  # error sqrt(2) * 100 at the sixth pixel, now counted
    result = flow_metrics(pred, gt)
    assert result["valid_pixels"] == 6
    assert result["epe"] == pytest.approx((16.5 + 100 * 2**0.5) / 6, rel=1e-6)
    assert result["5px"] == pytest.approx(4 / 6)


def test_thresholds_are_strictly_less_than():
    gt = torch.zeros(1, 2, 1, 3)
    pred = torch.tensor([[[[1.0, 3.0, 0.0]], [[0.0, 0.0, 5.0]]]])  # errors exactly 1, 3, 5
    result = flow_metrics(pred, gt)
    assert result["epe"] == pytest.approx(3.0)
    assert (result["1px"], result["3px"], result["5px"]) == (0.0, pytest.approx(1 / 3), pytest.approx(2 / 3))


def test_all_valid_equals_the_reference_formula():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 2, 17, 23, generator=generator) * 4
    gt = torch.randn(3, 2, 17, 23, generator=generator) * 4
    reference = torch.norm(gt - pred, p=2, dim=1).mean().item()
    assert flow_metrics(pred, gt)["epe"] == pytest.approx(reference, rel=1e-6)
    all_valid = torch.ones(3, 17, 23, dtype=torch.bool)
    assert flow_metrics(pred, gt, all_valid)["epe"] == pytest.approx(reference, rel=1e-6)


def test_nothing_valid_gives_nan_and_zero_pixels():
    pred, gt, _ = hand_case()
    result = flow_metrics(pred, gt, torch.zeros(1, 2, 3, dtype=torch.bool))
    assert result["valid_pixels"] == 0
    assert all(np.isnan(result[k]) for k in ("epe", "1px", "3px", "5px"))


def test_mismatched_or_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\) and \(1, 2, 4, 5\)"):
        epe_map(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\)"):
        flow_metrics(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


def test_numpy_wrapper_agrees_with_torch():
    pred, gt, valid = hand_case()
    to_np = lambda t: t[0].permute(1, 2, 0).numpy()  # (1, 2, H, W) -> (H, W, 2)
    result = flow_metrics_np(to_np(pred), to_np(gt), valid[0].numpy())
    assert result == pytest.approx(flow_metrics(pred, gt, valid))
    assert result["epe"] == pytest.approx(3.3, abs=1e-6)
    unmasked = flow_metrics_np(to_np(pred).astype(np.float64), to_np(gt))
    assert unmasked["valid_pixels"] == 6 and unmasked["epe"] > 1e5


def test_epe_tally_pools_pixels_over_pairs_and_splits_by_true_speed():
    from flowcli.metrics import EpeTally

    target = torch.zeros(1, 2, 2, 3)
    target[0, 0] = torch.tensor([[5.0, 20.0, 50.0], [0.0, 39.0, 40.0]])  # speeds: bands 0-10, 10-40, 40+
    pred = target.clone()
    pred[0, 1] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # error = |v| = these values
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    valid[0, 1, 2] = False  # unknown flow: in no band
    tally = EpeTally()
    err = tally.add(pred, target, valid)
    assert err.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    tally.add(torch.zeros(1, 2, 1, 1), torch.full((1, 2, 1, 1), 3.0), torch.ones(1, 1, 1, dtype=torch.bool))
    result = tally.result()  # second pair: speed 4.24, error 4.24
    assert result["valid_pixels"] == 6
    assert result["epe"] == pytest.approx((15 + 18**0.5) / 6)
    assert result["s0-10"] == pytest.approx((1 + 4 + 18**0.5) / 3)
    assert result["s10-40"] == pytest.approx((2 + 5) / 2)
    assert result["s40+"] == pytest.approx(3.0)
    assert result["1px"] == 0 and result["3px"] == pytest.approx(2 / 6) and result["5px"] == pytest.approx(5 / 6)
    assert EpeTally().result()["s40+"] is None


def test_pixels_whose_match_leaves_the_frame_are_told_apart():
    from flowcli.metrics import EpeTally, leaves_frame

    target = torch.zeros(1, 2, 3, 4)
    target[0, 0, 0, 3] = 0.0  # right column staying put: x = 3 = W - 1, still inside
    target[0, 0, 1, 3] = 0.5  # x = 3.5: out on the right
    target[0, 0, 1, 0] = -0.01  # out on the left
    target[0, 1, 0, 1] = -1.0  # y = -1: out at the top
    target[0, 1, 2, 2] = -2.0  # y = 0: inside
    target[0, 1, 2, 1] = 0.25  # y = 2.25: out at the bottom
    outside = leaves_frame(target)[0]
    assert outside.nonzero().tolist() == [[0, 1], [1, 0], [1, 3], [2, 1]]
    pred = target.clone()
    pred[0, 0] += torch.where(outside, 3.0, 1.0)  # error 3 px where the match leaves, 1 px elsewhere
    valid = torch.ones(1, 3, 4, dtype=torch.bool)
    valid[0, 2, 1] = False  # unknown flow counts in neither part
    tally = EpeTally()
    tally.add(pred, target, valid)
    result = tally.result()
    assert result["in-frame"] == pytest.approx(1.0) and result["out-of-frame"] == pytest.approx(3.0)
    assert result["out_of_frame_share"] == pytest.approx(3 / 11)
    assert EpeTally().result()["out-of-frame"] is None


def test_fl_all_is_kittis_outlier_share_over_valid_pixels():
    """Five pixels worked out by hand: an outlier needs EPE > 3 px AND > 5 % of |true flow|."""
    from flowcli.metrics import EpeTally

    gt = torch.tensor([[10.0, 0], [10, 0], [100, 0], [0, 0], [0, 0]]).T.reshape(1, 2, 1, 5)
    pred = torch.tensor([[10.0, 0], [14, 0], [104, 0], [2, 0], [50, 50]]).T.reshape(1, 2, 1, 5)
    # errors 0, 4 (> 3 and > 0.5: outlier), 4 (> 3 but < 5 = 5 % of 100: not), 2 (< 3: not), huge but unknown
    valid = torch.tensor([[[True, True, True, True, False]]])
    tally = EpeTally()
    tally.add(pred, gt, valid)
    assert tally.result()["fl_all"] == 1 / 4
    tally.add(pred[..., :2], gt[..., :2])  # two more pixels, one an outlier: pixel-weighted over pairs
    assert tally.result()["fl_all"] == 2 / 6
    assert EpeTally().result()["fl_all"] != EpeTally().result()["fl_all"]  # NaN without pixels
    broken = EpeTally()
    broken.add(torch.full_like(pred[..., :2], float("nan")), gt[..., :2])  # a prediction gone NaN: all outliers
    assert broken.result()["fl_all"] == 1.0


def test_occlusion_tally_noc_epe_and_mask_scores_by_hand():
    from flowcli.metrics import OcclusionTally

    target = torch.zeros(1, 2, 2, 3)
    pred = torch.zeros(1, 2, 2, 3)
    pred[0, 0] = torch.tensor([[3.0, 0, 0], [0, 0, 4.0]])  # errors 3 and 4 px, the rest exact
    truth = torch.tensor([[[True, False, False], [False, False, False]]])  # the 3 px pixel is occluded
    predicted = torch.tensor([[[True, True, False], [False, False, False]]])
    valid = torch.tensor([[[True, True, True], [True, True, False]]])  # the 4 px pixel has no ground truth
    tally = OcclusionTally()
    tally.add(pred, target, truth, valid, predicted)
    result = tally.result()
    assert result["epe_noc"] == 0.0  # 4 visible valid pixels, all exact
    assert result["occluded_share"] == pytest.approx(1 / 5)
    assert (result["precision"], result["recall"], result["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert result["predicted_share"] == pytest.approx(2 / 5)
    assert "precision" not in OcclusionTally().result()  # no mask given: only noc


def test_merged_tallies_equal_one_tally_over_both_batches():
    from flowcli.metrics import EpeTally

    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(1, 2, 8, 9, generator=gen) * 30, torch.randn(1, 2, 8, 9, generator=gen) * 30,
                torch.rand(1, 8, 9, generator=gen) > 0.2) for _ in range(2)]
    whole, merged = EpeTally(), EpeTally()
    for pred, target, valid in batches:
        whole.add(pred, target, valid)
        one = EpeTally()
        one.add(pred, target, valid)
        merged.merge(one)
    assert merged.result() == pytest.approx(whole.result(), rel=1e-12)
