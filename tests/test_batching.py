"""Many pairs from files through one Predictor: order, shared frames decoded once, --max-side, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowcli.errors import FlowcliError, ImageError
from flowcli.inference.batching import iterate_predictions
from flowcli.inference.engine import Predictor
from flowcli.io import read_image, read_image_pair, write_image
from flowcli.model import FlowNetS, ModelConfig


def small_predictor() -> Predictor:
    torch.manual_seed(0)
    model = FlowNetS(ModelConfig(width=0.25, batch_norm=True)).eval()
    torch.nn.init.normal_(model.predict_flow2.weight, std=0.05)  # a flow far from zero, so differences show
    return Predictor(model, device="cpu", refine=0)


def write_pairs(folder, sizes, seed: int = 3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    pairs = []
    for index, (height, width) in enumerate(sizes):
        paths = (folder / f"{index}_img1.png", folder / f"{index}_img2.ppm")
        for path in paths:
            write_image(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        pairs.append(paths)
    return pairs


def test_iterate_predictions_returns_every_pair_in_order(tmp_path):
    pairs = write_pairs(tmp_path, [(64, 80), (64, 80), (72, 64)])  # the size changes mid-batch
    predictor = small_predictor()
    results = list(iterate_predictions(predictor, pairs))
    assert [i for i, _ in results] == [0, 1, 2]
    for (index, flow), (path1, path2) in zip(results, pairs):
        expected = predictor.predict_numpy(*read_image_pair(path1, path2))
        np.testing.assert_allclose(flow, expected, atol=1e-4, rtol=1e-4)


def test_iterate_predictions_with_max_side_is_predict_numpy_with_max_side(tmp_path):
    pairs = write_pairs(tmp_path, [(64, 160), (72, 64)])
    predictor = small_predictor()
    results = [flow for _, flow in iterate_predictions(predictor, pairs, max_side=80)]
    assert [f.shape for f in results] == [(64, 160, 2), (72, 64, 2)]  # back at the input's size
    for flow, (path1, path2) in zip(results, pairs):
        expected = predictor.predict_numpy(*read_image_pair(path1, path2), max_side=80)
        np.testing.assert_allclose(flow, expected, atol=1e-4, rtol=1e-4)
    assert np.abs(results[0] - predictor.predict_numpy(*read_image_pair(*pairs[0]))).max() > 1e-3
    with pytest.raises(FlowcliError, match="max_side=32: must be at least 64"):
        next(iterate_predictions(predictor, pairs, max_side=32))


def test_max_side_reads_frames_over_pillows_limit(tmp_path, monkeypatch):
    from PIL import Image

    pairs = write_pairs(tmp_path, [(64, 160)])
    predictor = small_predictor()
    expected = predictor.predict_numpy(*read_image_pair(*pairs[0]), max_side=80)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="over Pillow's limit of 1,000 pixels"):
        list(iterate_predictions(predictor, pairs))
    flow = [f for _, f in iterate_predictions(predictor, pairs, max_side=80)][0]
    np.testing.assert_allclose(flow, expected, atol=1e-4, rtol=1e-4)
    assert Image.MAX_IMAGE_PIXELS == 1000  # lifted for those reads only


def test_frames_shared_by_two_pairs_are_decoded_once(tmp_path, monkeypatch):
    import flowcli.inference.batching

    rng = np.random.default_rng(5)
    frames = [tmp_path / f"frame{n}.png" for n in range(4)]
    for path in frames:
        write_image(path, rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    decoded = []
    monkeypatch.setattr(flowcli.inference.batching, "read_image",
                        lambda path, **kw: decoded.append(path) or read_image(path, **kw))
    predictor = small_predictor()
    pairs = list(zip(frames, frames[1:]))
    results = [flow for _, flow in iterate_predictions(predictor, pairs, workers=2)]
    assert len(results) == 3
    assert sorted(decoded) == frames  # each once, though the middle two are in two pairs
    for flow, (path1, path2) in zip(results, pairs):
        np.testing.assert_allclose(flow, predictor.predict_numpy(read_image(path1), read_image(path2)),
                                   atol=1e-4, rtol=1e-4)


def test_iterate_predictions_raises_for_a_missing_image(tmp_path):
    path = tmp_path / "a.ppm"
    write_image(path, np.zeros((64, 64, 3), np.uint8))
    predictor = small_predictor()
    seen = []
    with pytest.raises(ImageError, match="no such file"):
        for index, _ in iterate_predictions(predictor, [(path, path), (path, tmp_path / "missing.ppm")]):
            seen.append(index)
    assert seen == [0]
