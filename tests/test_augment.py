import pytest
import torch
import torch.nn.functional as F

from flowcli.data.augment import AugmentConfig, augment, random_crop
from flowcli.errors import DataError

torch.set_num_threads(1)

H, W = 64, 80
IDENTITY = dict(translate=0.0, rotate=0.0, scale=(1.0, 1.0), rel_translate=0.0, rel_rotate=0.0,
                rel_scale=(1.0, 1.0), flip_h=0.0, flip_v=0.0, photometric=False)


def texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth analytic RGB texture, sampled exactly at any real coordinates: (3, h, w)."""
    return torch.stack([
        0.5 + 0.2 * torch.sin(0.31 * x + 0.17 * y + k) + 0.15 * torch.sin(-0.13 * x + 0.27 * y + 2 * k)
        + 0.1 * torch.cos(0.21 * x - 0.23 * y + 0.5 * k)
        for k in range(3)
    ])


def affine_pair(batch: int = 4):
    """img2(p + flow(p)) == img1(p) exactly, for the affine flow f(p) = A p + b."""
    a = torch.tensor([[0.03, -0.02], [0.01, 0.02]])
    b = torch.tensor([3.5, -2.25])
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    points = torch.stack([xs, ys], -1)  # (H, W, 2)
    flow = points @ a.T + b
    back = (points - b) @ torch.linalg.inv(torch.eye(2) + a).T  # where q = p + f(p) came from
    img1 = texture(xs, ys)
    img2 = texture(back[..., 0], back[..., 1])
    expand = lambda t: t.expand(batch, *t.shape).clone()  # noqa: E731
    return expand(img1), expand(img2), expand(flow.permute(2, 0, 1)), torch.ones(batch, H, W, dtype=torch.bool)


def backward_warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """img sampled at p + flow(p), zeros outside."""
    _, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    x = (xs + flow[:, 0]) / ((w - 1) / 2) - 1
    y = (ys + flow[:, 1]) / ((h - 1) / 2) - 1
    return F.grid_sample(img, torch.stack([x, y], -1), align_corners=True, padding_mode="zeros")


@pytest.mark.parametrize("config", [
    AugmentConfig(crop=(48, 64), photometric=False, rotate=17.0, scale=(0.9, 2.0), rel_translate=0.03,
                  rel_rotate=3.0, rel_scale=(0.95, 1.05), flip_h=0.5, flip_v=0.5),
    AugmentConfig(crop=(56, 72), photometric=False, keep_inside=False, scale=(0.8, 1.1), rotate=17.0),
], ids=["inside", "borders"])
def test_augmented_flow_warps_image2_onto_image1(config):
    img1, img2, flow, valid = affine_pair()
    new1, new2, new_flow, new_valid = augment(img1, img2, flow, valid, config=config,
                                              generator=torch.Generator().manual_seed(3))
    # where augmented image 2 has real content: augment an all-ones image 2 with the same draws
    _, cover, _, _ = augment(img1, torch.ones_like(img2), flow, valid, config=config,
                             generator=torch.Generator().manual_seed(3))
    mask = new_valid & (backward_warp(cover, new_flow)[:, 0] > 0.999)
    assert mask.float().mean() > 0.5

    def error(f: torch.Tensor) -> float:
        return (backward_warp(new2, f) - new1).abs().mean(1)[mask].mean().item()

    good = error(new_flow)
    assert good < 0.004
    assert error(torch.zeros_like(new_flow)) > 5 * good + 0.03
    assert error(new_flow + torch.tensor([3.0, 0.0])[:, None, None]) > 5 * good + 0.03


def test_zoom_out_marks_outside_pixels_invalid():
    img1, img2, flow, valid = affine_pair(1)
    config = AugmentConfig(**{**IDENTITY, "scale": (0.8, 0.8)})
    *_, new_valid = augment(img1, img2, flow, valid, config=config, generator=torch.Generator().manual_seed(0))
    assert not new_valid[0, 0].any() and not new_valid[0, :, -1].any()
    assert new_valid[0, H // 2, W // 2]


def test_invalid_flow_stays_invalid_and_zero():
    img1, img2, flow, valid = affine_pair(1)
    valid[:, 10:20, 30:40] = False
    flow[:, :, 10:20, 30:40] = 1e10  # raw unknown-flow values must not leak into neighbours
    config = AugmentConfig(**{**IDENTITY, "flip_h": 1.0})
    _, _, new_flow, new_valid = augment(img1, img2, flow, valid, config=config,
                                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(new_valid, valid.flip(-1))
    assert new_flow.abs().max() < 100
    assert (new_flow[:, :, ~new_valid[0]] == 0).all()


@pytest.mark.parametrize("flip, axis, negated", [("flip_h", -1, 0), ("flip_v", -2, 1)])
def test_flip_negates_the_right_component(flip, axis, negated):
    img1, img2, _, valid = affine_pair(2)
    flow = torch.tensor([2.5, -1.5])[None, :, None, None].expand(2, 2, H, W)
    config = AugmentConfig(**{**IDENTITY, flip: 1.0})
    new1, _, new_flow, new_valid = augment(img1, img2, flow, valid, config=config,
                                           generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([2.5, -1.5])
    expected[negated] *= -1
    assert new_valid.all()
    torch.testing.assert_close(new_flow, expected[None, :, None, None].expand_as(new_flow), atol=1e-4, rtol=0)
    torch.testing.assert_close(new1, img1.flip(axis), atol=1e-4, rtol=0)


def test_photometric_only_keeps_flow():
    img1, img2, flow, valid = affine_pair(3)
    config = AugmentConfig(geometric=False)
    new1, new2, new_flow, new_valid = augment(img1, img2, flow, valid, config=config,
                                              generator=torch.Generator().manual_seed(1))
    assert torch.equal(new_flow, flow) and torch.equal(new_valid, valid)
    assert not torch.allclose(new1, img1, atol=1e-2) and not torch.allclose(new2, img2, atol=1e-2)
    assert new1.min() >= 0 and new1.max() <= 1 and new2.min() >= 0 and new2.max() <= 1


PHOTOMETRY_ONLY = dict(geometric=False, noise=0.0, pair_jitter=0.0, brightness=0.0)


def test_photometric_changes_follow_their_formula():
    # fixed draws (ranges of one value): colour 1.1, gamma 0.8, contrast 1 + 0.25, no brightness or noise
    img1, img2, flow, valid = affine_pair(2)
    config = AugmentConfig(**PHOTOMETRY_ONLY, colour=(1.1, 1.1), gamma=(0.8, 0.8), contrast=(0.25, 0.25))
    new1, new2, _, _ = augment(img1, img2, flow, valid, config=config, generator=torch.Generator().manual_seed(3))
    for new, img in ((new1, img1), (new2, img2)):
        x = (img.double() * 1.1).clamp(0, 1) ** 0.8
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        torch.testing.assert_close(new.double(), ((x - mean) * 1.25 + mean).clamp(0, 1), atol=2e-6, rtol=0)


def test_photometric_changes_leave_the_callers_images_alone():
    # the changes run in place on the augmentation's own tensors; generated batches are reused
    batch = affine_pair(2)
    before = [t.clone() for t in batch]
    for crop, photometric in ((None, True), ((H, W), True), ((H, W), False), (None, False)):
        config = AugmentConfig(geometric=False, crop=crop, photometric=photometric)
        out = augment(*batch, config=config, generator=torch.Generator().manual_seed(4))
        assert all(torch.equal(a, b) for a, b in zip(batch, before))
        images_are_new = all(a.data_ptr() != b.data_ptr() for a, b in zip(out[:2], batch[:2]))
        assert images_are_new and (photometric or all(a.data_ptr() != b.data_ptr() for a, b in zip(out, batch)))


def test_noise_is_gaussian_and_differs_between_samples_and_images():
    flat = torch.full((4, 3, H, W), 0.5)
    flow, valid = torch.zeros(4, 2, H, W), torch.ones(4, H, W, dtype=torch.bool)
    config = AugmentConfig(**{**PHOTOMETRY_ONLY, "noise": 0.04}, colour=(1.0, 1.0), gamma=(1.0, 1.0),
                           contrast=(0.0, 0.0))
    new1, new2, _, _ = augment(flat, flat.clone(), flow, valid, config=config,
                               generator=torch.Generator().manual_seed(5))
    grains = [img - 0.5 for img in (*new1, *new2)]  # each image's noise, sigma in [0, 0.04]
    for grain in grains:
        sigma = grain.std().item()
        assert 0 < sigma < 0.04 and abs(grain.mean().item()) < 4 * sigma / grain.numel() ** 0.5
        within = (grain.abs() < sigma).double().mean().item()  # 68.3 % of a normal lies within one sigma
        assert within == pytest.approx(0.683, abs=0.01)
    unit = [g / g.std() for g in grains]
    for i in range(len(unit)):
        for j in range(i + 1, len(unit)):
            assert abs((unit[i] * unit[j]).mean().item()) < 0.05  # no two images share their noise


def test_deterministic_given_generator():
    batch = affine_pair(2)
    config = AugmentConfig(crop=(48, 64))
    run = lambda seed: augment(*batch, config=config, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[2], other[2])


def test_random_crop_centre_and_errors():
    img1, img2, flow, valid = affine_pair(2)
    c1, _, cflow, cvalid = random_crop(img1, img2, flow, valid, (32, 40))
    assert torch.equal(c1, img1[..., 16:48, 20:60]) and torch.equal(cflow, flow[..., 16:48, 20:60])
    assert cvalid.shape == (2, 32, 40)
    with pytest.raises(DataError, match=r"image 64x80 \(HxW\) is smaller than the crop size 32x96"):
        random_crop(img1, img2, flow, valid, (32, 96))
    with pytest.raises(DataError, match="smaller than the crop size"):
        augment(img1, img2, flow, valid, config=AugmentConfig(crop=(70, 40)), generator=torch.Generator())
    with pytest.raises(ValueError, match=r"expected flow of shape \(2, 2, 64, 80\)"):
        augment(img1, img2, flow[:, :1], valid, config=AugmentConfig(), generator=torch.Generator())


def test_the_devices_gathered_noise_windows_are_the_cpus_views():
    from flowcli.data.augment import _noise_windows

    shape = (3, 3, 8, 10)
    views = _noise_windows(shape, torch.Generator().manual_seed(5), gather=False)
    gathered = _noise_windows(shape, torch.Generator().manual_seed(5), gather=True)  # what a GPU gets
    assert isinstance(views, list) and gathered.shape == shape
    assert all(torch.equal(v, g) for v, g in zip(views, gathered))
    assert not torch.equal(gathered[0], gathered[1])  # each sample its own window
