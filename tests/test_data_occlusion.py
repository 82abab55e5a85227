"""Ground-truth occlusion of generated pairs (flowcli.data.occlusion), checked two independent ways:
against the front layer evaluated by brute force at the exact landing point, and by colour (a
visible pixel finds its colour in image 2 where the flow lands, an occluded one mostly does not)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from flowcli.data.occlusion import true_occlusion
from flowcli.data.scenes import SynthConfig, sample_scenes
from flowcli.data.synth import SceneGenerator, write_dataset
from flowcli.io import read_flo, read_mask

SMALL = SynthConfig(height=64, width=96, texture_count=12, texture_size=64, shape_count=32, shape_size=64)


def brute_force_occlusion(config: SynthConfig, seed: int, n: int) -> tuple[torch.Tensor, object]:
    """Front layer of image 2 at the continuous point q = p + flow(p), by testing every object's
    mask there (no rounding, no bounding boxes); occluded where it is not p's layer or q leaves the frame."""
    h, w, size = config.height, config.width, config.shape_size
    shadow = SceneGenerator(config, seed=seed)  # same seed: its first draws are the scenes rendered below
    scene = SceneGenerator(config, seed=seed).render(n)
    params = sample_scenes(config, shadow._draw, n, shadow.n_textures, shadow._backdrops, shadow.n_photos,
                           shadow._mask_boxes[:, 2:].amax(-1))
    masks = shadow._masks.view(-1, 1, size, size)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    qx, qy = xs + scene.flow[:, 0].double(), ys + scene.flow[:, 1].double()  # (n, H, W)
    points = torch.stack([qx, qy, torch.ones_like(qx)], -1)  # (n, H, W, 3)
    inv = torch.linalg.inv(params.motion @ params.a1)[:, 1:]  # frame-2 pixels -> canonical, objects only
    canonical = torch.einsum("nkij,nhwj->nkhwi", inv, points)[..., :2].float()
    value = F.grid_sample(masks[params.mask_index.flatten()], canonical.flatten(0, 1),
                          align_corners=False).view(n, -1, h, w)
    inside = (value > 0.5) & params.active[:, :, None, None]
    front = (inside * torch.arange(1, inside.shape[1] + 1).view(1, -1, 1, 1)).amax(1)
    outside = (qx < 0) | (qx > w - 1) | (qy < 0) | (qy > h - 1)
    return outside | (front != scene.layers1), scene


def test_occlusion_matches_the_front_layer_at_the_exact_landing_point():
    expected, scene = brute_force_occlusion(SMALL, seed=4, n=4)
    got = true_occlusion(scene.flow, scene.layers1, scene.layers2)
    assert 0.02 < got.float().mean() < 0.5  # the scenes do occlude
    # the generator rounds q to the nearest pixel; that can flip only pixels whose q sits near a contour
    assert (got == expected).float().mean() > 0.98


def test_visible_pixels_find_their_colour_in_image_2_and_occluded_ones_mostly_do_not():
    scene = SceneGenerator(SMALL, seed=9).render(6)
    occluded = true_occlusion(scene.flow, scene.layers1, scene.layers2)
    b, _, h, w = scene.img1.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    tx, ty = xs + scene.flow[:, 0], ys + scene.flow[:, 1]
    grid = torch.stack([tx / (w - 1) * 2 - 1, ty / (h - 1) * 2 - 1], -1)
    error = (F.grid_sample(scene.img2, grid, align_corners=True) - scene.img1).abs().amax(1)
    in_frame = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    assert not (~in_frame & ~occluded).any()  # leaving the frame is occluded
    wrong_visible = (error[~occluded] > 0.1).float().mean()
    wrong_hidden = (error[occluded & in_frame] > 0.1).float().mean()
    # visible: only bilinear mixing at layer contours; hidden in frame: another texture over it
    assert wrong_visible < 0.05
    assert wrong_hidden > 0.4 and wrong_hidden > 8 * wrong_visible


def test_write_dataset_adds_the_occlusion_png_and_keeps_the_other_files(tmp_path):
    write_dataset(tmp_path, count=3, seed=2, config=SMALL, batch_size=2)
    scenes = SceneGenerator(SMALL, seed=2)
    truths = [true_occlusion(s.flow, s.layers1, s.layers2)[i] for s in (scenes.render(2), scenes.render(1))
              for i in range(s.flow.shape[0])]
    for index, truth in enumerate(truths, 1):
        mask = read_mask(tmp_path / f"{index:05d}_occ.png")
        assert np.array_equal(mask, truth.numpy())
        assert read_flo(tmp_path / f"{index:05d}_flow.flo").shape == (64, 96, 2)
    write_dataset(tmp_path, count=1, seed=2, config=SMALL, overwrite=True)  # overwrite removes the old masks too
    assert sorted(p.name for p in tmp_path.glob("*_occ.png")) == ["00001_occ.png"]
