"""The torch Dataset and its loader: items, unknown flow masked, crops, sizes, distributed sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowcli.data.dataset import FlowDataset, make_loader
from flowcli.data.folders import find_samples
from flowcli.errors import DataError, ImageError
from flowcli.io import write_flo

torch.set_num_threads(1)


def test_dataset_items_and_unknown_flow_masked(tmp_path, make_chairs_folder):
    folder = make_chairs_folder(tmp_path, n=2)
    flow = np.ones((64, 64, 2), np.float32)
    flow[5:9, 10:20] = 1e10
    write_flo(folder / "00002_flow.flo", flow)
    item = FlowDataset(find_samples(folder)[0])[1]
    assert item["id"] == "00002"
    assert item["img1"].shape == (3, 64, 64) and item["img1"].dtype == torch.float32
    assert 0 <= item["img1"].min() and item["img1"].max() <= 1
    assert item["flow"].shape == (2, 64, 64) and item["valid"].dtype == torch.bool
    assert not item["valid"][5:9, 10:20].any() and item["valid"].sum() == 64 * 64 - 40
    assert (item["flow"][:, 5:9, 10:20] == 0).all()


def test_dataset_crop_deterministic_and_cache(tmp_path, make_chairs_folder):
    samples, _ = find_samples(make_chairs_folder(tmp_path, n=2))
    again = FlowDataset(samples[1:], crop=(32, 48), seed=3)
    crops = {}
    for epoch in range(4):
        again.set_epoch(epoch)
        crops[epoch] = again[0]["flow"]
    again.set_epoch(0)
    assert torch.equal(again[0]["flow"], crops[0])
    assert any(not torch.equal(crops[0], crops[e]) for e in (1, 2, 3))

    pair_bytes = 64 * 64 * (3 + 3 + 2 * 4 + 1)  # two uint8 images, float32 flow, bool valid
    dataset = FlowDataset(samples, crop=(32, 48), seed=3, cache_bytes=pair_bytes + 10)  # room for one
    first, _ = dataset[0], dataset[1]
    assert first["img1"].shape == (3, 32, 48) and first["valid"].shape == (32, 48)
    for path in (p for s in samples for p in (s.img1, s.img2, s.flow)):
        path.unlink()
    assert torch.equal(dataset[0]["img1"], first["img1"])  # served from the cache now
    with pytest.raises(ImageError, match="no such file"):  # the budget was spent on the first pair
        dataset[1]


def test_dataset_size_errors(tmp_path, make_chairs_folder):
    folder = make_chairs_folder(tmp_path, n=2)
    write_flo(folder / "00001_flow.flo", np.zeros((64, 32, 2), np.float32))
    samples, _ = find_samples(folder)
    with pytest.raises(DataError, match=r"00001_flow.flo: flow is 64x32 \(HxW\) but 00001_img1.ppm is 64x64"):
        FlowDataset(samples)[0]
    with pytest.raises(DataError, match=r"00002_img1.ppm: image 64x64 \(HxW\) is smaller than the crop size 48x96"):
        FlowDataset(samples, crop=(48, 96))[1]


def test_make_loader(tmp_path, make_chairs_folder):
    samples, _ = find_samples(make_chairs_folder(tmp_path, n=3))
    dataset = FlowDataset(samples)
    with pytest.raises(DataError, match="batch size 4 is larger than the 3 samples"):
        make_loader(dataset, batch_size=4, shuffle=True, seed=0, drop_last=True)
    order = lambda: [i for b in make_loader(dataset, batch_size=2, shuffle=True, seed=9, drop_last=False)  # noqa: E731
                     for i in b["id"]]
    first = order()
    assert sorted(first) == [s.id for s in samples] and order() == first
    with pytest.raises(DataError, match="initialized torch.distributed"):
        make_loader(dataset, batch_size=1, shuffle=True, seed=0, drop_last=True, distributed=True)


def test_make_loader_distributed(tmp_path, make_chairs_folder):
    import torch.distributed as dist

    samples, _ = find_samples(make_chairs_folder(tmp_path / "data", n=3))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = make_loader(FlowDataset(samples), batch_size=2, shuffle=True, seed=4, drop_last=True,
                             distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler) and loader.sampler.seed == 4
        assert len(loader) == 1
        with pytest.raises(DataError, match="batch size 5 is larger than the 3 samples per process"):
            make_loader(FlowDataset(samples), batch_size=5, shuffle=True, seed=4, drop_last=True, distributed=True)
    finally:
        dist.destroy_process_group()
