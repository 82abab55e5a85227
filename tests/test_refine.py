"""Lucas-Kanade refinement: recovers sub-pixel motion, keeps exact flow, leaves flat areas alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flowcli.inference.refine import refine_flow
from flowcli.inference.warp import box_sum

torch.set_num_threads(1)


def texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) smooth random colours: blurred noise, so brightness constancy is well posed."""
    noise = torch.rand(1, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def shifted(img: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """img2 with img2(p + (dx, dy)) = img(p): the flow from img to img2 is (dx, dy) everywhere."""
    _, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack(((xs - dx) / (w - 1) * 2 - 1, (ys - dy) / (h - 1) * 2 - 1), -1)[None]
    return F.grid_sample(img, grid, mode="bicubic", padding_mode="border", align_corners=True)


def interior_error(flow: torch.Tensor, dx: float, dy: float, margin: int = 8) -> float:
    truth = torch.tensor([dx, dy]).view(1, 2, 1, 1)
    return (flow - truth)[..., margin:-margin, margin:-margin].norm(dim=1).mean().item()


def test_sub_pixel_motion_is_recovered_from_zero_flow():
    img1 = texture(64, 96)
    img2 = shifted(img1, 0.6, -0.4)
    start = torch.zeros(1, 2, 64, 96)
    assert interior_error(start, 0.6, -0.4) == pytest.approx(0.721, abs=1e-3)
    one, three = (interior_error(refine_flow(img1, img2, start, iterations=n), 0.6, -0.4) for n in (1, 3))
    assert one < 0.06 and three <= one and three < 0.04  # measured: 0.040, then 0.036


@pytest.mark.parametrize("height, width", [(64, 96), (63, 95)])  # odd sides: padded, then cropped back
def test_a_half_resolution_step_reaches_twice_as_far(height, width):
    img1 = texture(height, width)
    img2 = shifted(img1, 1.6, -1.4)
    start = torch.zeros(1, 2, height, width)
    assert interior_error(start, 1.6, -1.4) == pytest.approx(2.126, abs=1e-3)
    half = refine_flow(img1, img2, start, iterations=1, scale=2)
    full = refine_flow(img1, img2, start, iterations=1)
    assert half.shape == start.shape
    # measured: 0.278 / 0.241 at half resolution; a full-resolution step stops at 1 px per component: 0.78
    assert interior_error(half, 1.6, -1.4) < 0.35 < 0.7 < interior_error(full, 1.6, -1.4)


def test_a_correct_flow_stays_correct_and_the_input_is_not_modified():
    img1 = texture(64, 96, seed=1)
    img2 = shifted(img1, 2.0, 1.0)  # whole pixels: the warp is exact
    start = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 64, 96).clone()
    refined = refine_flow(img1, img2, start, iterations=3)
    assert interior_error(refined, 2.0, 1.0) < 1e-3
    assert torch.equal(start[:, 0], torch.full((1, 64, 96), 2.0))


def test_flat_images_keep_the_given_flow_exactly():
    flat = torch.full((2, 3, 40, 50), 0.5)
    flow = torch.randn(2, 2, 40, 50)
    refined = refine_flow(flat, flat, flow, iterations=2)
    assert torch.isfinite(refined).all() and torch.equal(refined, flow)


@pytest.mark.parametrize("window", [1, 3, 5, 7, 15, 25])  # 25: wider than the 17 rows
def test_box_sum_matches_a_zero_padded_window_sum(window):
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = F.avg_pool2d(x, window, stride=1, padding=window // 2, count_include_pad=True) * window ** 2
    torch.testing.assert_close(box_sum(x, window), expected)


def test_bad_arguments_are_refused():
    img = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        refine_flow(img, img, torch.zeros(1, 2, 8, 8), window=4)
    with pytest.raises(ValueError, match="iterations"):
        refine_flow(img, img, torch.zeros(1, 2, 8, 8), iterations=-1)
    with pytest.raises(ValueError, match="scale 1 or 2"):
        refine_flow(img, img, torch.zeros(1, 2, 8, 8), scale=4)
