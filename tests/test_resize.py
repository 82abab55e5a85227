"""--max-side: the size the network sees, the shrink (in strips for large frames), the flow resized back,
and the warning when frames end up under 128 px."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowcli.errors import FlowcliError
from flowcli.inference.resize import max_side_warning, network_size, resize_flow, resize_for_max_side


def test_resize_for_max_side_and_back():
    img = np.zeros((100, 300, 3), np.uint8)
    a, b, scale = resize_for_max_side(img, img, 150)
    assert a.shape == b.shape == (64, 150, 3) and scale == pytest.approx(0.5)  # 50 -> clamped to 64
    same, _, one = resize_for_max_side(img, img, 300)
    assert same is img and one == 1.0
    with pytest.raises(FlowcliError, match="max_side=32: must be at least 64"):
        resize_for_max_side(img, img, 32)
    flow = np.stack([np.full((32, 32), 1.0), np.full((32, 32), 2.0)], axis=-1).astype(np.float32)
    up = resize_flow(flow, 64, 128)  # u scaled by 128/32, v by 64/32
    assert up.shape == (64, 128, 2)
    np.testing.assert_allclose(up[..., 0], 4.0)
    np.testing.assert_allclose(up[..., 1], 4.0)


@pytest.mark.parametrize("size, max_side, seen", [
    ((384, 512), None, (384, 512)),
    ((384, 512), 512, (384, 512)),  # fits already
    ((384, 512), 256, (192, 256)),
    ((512, 384), 256, (256, 192)),  # portrait: the longer side is the height
    ((100, 1000), 500, (64, 500)),  # 50 raised to the network's 64 px minimum
])
def test_network_size_is_height_by_width(size, max_side, seen):
    assert network_size(*size, max_side) == seen


def test_frames_shrink_as_torchs_antialiased_bilinear_within_one_level():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 410, 3), dtype=np.uint8)
    small, again, scale = resize_for_max_side(img, img, 97)
    assert small.shape == (71, 97, 3) and small.dtype == np.uint8 and np.array_equal(small, again)
    assert scale == pytest.approx(97 / 410)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()  # the same filter in float, rounded
    direct = F.interpolate(x, size=(71, 97), mode="bilinear", align_corners=False, antialias=True)
    direct = direct[0].permute(1, 2, 0).round().clamp(0, 255).numpy()
    assert np.abs(small.astype(int) - direct).max() <= 1  # uint8 arithmetic: at most one level apart
    assert np.abs(small.astype(int) - direct).mean() < 0.5


def test_max_side_warning_only_when_the_network_sees_under_128_px():
    assert max_side_warning(384, 512, None) is None
    assert max_side_warning(384, 512, 256) is None  # 192x256
    assert max_side_warning(100, 120, 200) is None  # small, but not made smaller by max_side
    assert max_side_warning(384, 512, 160) == (
        "max_side=160: the network sees 120x160 frames, and under 128 px its flow can be worse than zero flow "
        "(max_side=171 keeps 128 px)")
    assert network_size(384, 512, 171) == (128, 171)  # the hint is right
    # 128 px cannot be reached by shrinking these: the hint is the full size
    assert max_side_warning(96, 192, 100).endswith("sees 64x100 frames, and under 128 px its flow can be worse "
                                                   "than zero flow (max_side=192 keeps the full size)")
