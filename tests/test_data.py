from pathlib import Path

import numpy as np
import pytest
import torch

from flowcli.data.dataset import FlowDataset, make_loader
from flowcli.data.folders import Sample, find_samples
from flowcli.data.splits import load_split, save_split, split_samples
from flowcli.errors import DataError
from flowcli.io import write_flo, write_image

torch.set_num_threads(1)


def make_folder(folder: Path, n: int = 10, size: tuple[int, int] = (64, 64)) -> Path:
    """n random Flying Chairs triplets named 00001.. in `folder`."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        for kind in ("img1", "img2"):
            write_image(folder / f"{i:05d}_{kind}.ppm", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        write_flo(folder / f"{i:05d}_flow.flo", rng.normal(0, 3, (*size, 2)).astype(np.float32))
    return folder


def fake_samples(n: int) -> list[Sample]:
    return [Sample(f"{i:05d}", Path(f"{i:05d}_img1.ppm"), Path(f"{i:05d}_img2.ppm"), Path(f"{i:05d}_flow.flo"))
            for i in range(1, n + 1)]


def ids(samples) -> list[str]:
    return [s.id for s in samples]


def test_find_samples_sorted_and_complete(tmp_path):
    samples, incomplete = find_samples(make_folder(tmp_path))
    assert ids(samples) == [f"{i:05d}" for i in range(1, 11)] and incomplete == []
    assert samples[0].img1 == tmp_path / "00001_img1.ppm" and samples[0].flow.name == "00001_flow.flo"


def test_incomplete_triplet_reported_and_strict_raises(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "00007_flow.flo").unlink()
    (tmp_path / "00003_img2.ppm").unlink()
    samples, incomplete = find_samples(tmp_path)
    assert len(samples) == 8
    assert incomplete == ["00003: missing 00003_img2.ppm", "00007: missing 00007_flow.flo"]
    with pytest.raises(DataError, match="00007: missing 00007_flow.flo"):
        find_samples(tmp_path, strict=True)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError) as info:
        find_samples(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no Flying Chairs pairs found (expected <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo)"
    )
    with pytest.raises(DataError, match="not a folder"):
        find_samples(tmp_path / "nowhere")
    (tmp_path / "00001_img1.ppm").write_bytes(b"")
    with pytest.raises(DataError, match="no complete Flying Chairs triplet.*00001: missing 00001_img2.ppm, 00001_flow.flo"):
        find_samples(tmp_path)


def test_official_split_file_honoured(tmp_path):
    folder = make_folder(tmp_path / "data")
    samples, _ = find_samples(folder)
    labels = [1, 2, 1, 1, 2, 1, 1, 1, 2, 1]
    (tmp_path / "FlyingChairs_train_val.txt").write_text("".join(f"{v}\n" for v in labels))  # in the parent
    for split in ("official", "auto"):
        parts = split_samples(samples, split=split, folder=folder)
        assert ids(parts["val"]) == ["00002", "00005", "00009"] == ids(parts["test"])
        assert ids(parts["train"]) == [s.id for s, v in zip(samples, labels) if v == 1]
    (folder / "FlyingChairs_train_val.txt").write_text("1\n2\n")  # the folder's own file wins
    with pytest.raises(DataError, match="2 lines but the folder has 10 pairs"):
        split_samples(samples, split="official", folder=folder)
    # A subset of the full dataset keeps its original ids: line k labels pair k.
    (folder / "FlyingChairs_train_val.txt").write_text("".join(f"{v}\n" for v in [2] * 3 + labels + [1] * 5))
    parts = split_samples(samples, split="official", folder=folder)
    assert ids(parts["val"]) == ["00001", "00002", "00003"] + [f"{k:05d}" for k in (5, 8)]
    with pytest.raises(DataError, match="no FlyingChairs_train_val.txt"):
        split_samples(samples, split="official", folder=tmp_path / "a" / "b")


def test_reference_split_reproduced():
    for n in (1485, 10, 11):
        samples = fake_samples(n)
        train_n = int(0.8 * n)
        train, test = torch.utils.data.random_split(
            [s.id for s in samples], [train_n, n - train_n], generator=torch.Generator().manual_seed(42)
        )
        parts = split_samples(list(reversed(samples)), split="reference")  # input order does not matter
        assert ids(parts["train"]) == [train.dataset[i] for i in train.indices]
        assert ids(parts["test"]) == [test.dataset[i] for i in test.indices] == ids(parts["val"])
    assert (len(parts["train"]), len(parts["test"])) == (8, 3)  # n = 11: int(8.8) = 8
    parts = split_samples(fake_samples(1485), split="reference")
    assert (len(parts["train"]), len(parts["test"])) == (1188, 297)
    fractional = torch.utils.data.random_split(range(1485), [0.8, 0.2], generator=torch.Generator().manual_seed(42))
    assert [f"{i + 1:05d}" for i in fractional[1].indices] == ids(parts["test"])


def test_seeded_split_stable_disjoint_complete():
    samples = fake_samples(50)
    first = split_samples(samples, split="seeded", seed=5)
    assert first == split_samples(samples, split="seeded", seed=5)
    assert first != split_samples(samples, split="seeded", seed=6)
    assert [len(first[p]) for p in ("train", "val", "test")] == [40, 5, 5]
    everything = ids(first["train"]) + ids(first["val"]) + ids(first["test"])
    assert sorted(everything) == ids(samples)
    assert split_samples(samples, folder=None) == split_samples(samples, split="seeded", seed=0)  # auto


def test_save_and_load_split(tmp_path):
    samples = fake_samples(20)
    parts = split_samples(samples, split="seeded", seed=1)
    save_split(tmp_path / "split.json", parts)
    assert load_split(tmp_path / "split.json", samples) == parts
    gone = parts["test"][0].id
    with pytest.raises(DataError, match=f"1 ids are not in the dataset folder \\({gone}\\)"):
        load_split(tmp_path / "split.json", [s for s in samples if s.id != gone])
    with pytest.raises(DataError, match="no such split file"):
        load_split(tmp_path / "missing.json", samples)


def test_dataset_items_and_unknown_flow_masked(tmp_path):
    folder = make_folder(tmp_path, n=2)
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


def test_dataset_crop_deterministic_and_cache(tmp_path):
    samples, _ = find_samples(make_folder(tmp_path, n=2))
    dataset = FlowDataset(samples, crop=(32, 48), seed=3, cache=True)
    first = dataset[0]
    assert first["img1"].shape == (3, 32, 48) and first["valid"].shape == (32, 48)
    for path in (samples[0].img1, samples[0].img2, samples[0].flow):
        path.unlink()  # served from the cache now
    assert torch.equal(dataset[0]["img1"], first["img1"])
    again = FlowDataset(samples[1:], crop=(32, 48), seed=3)
    crops = {}
    for epoch in range(4):
        again.set_epoch(epoch)
        crops[epoch] = again[0]["flow"]
    again.set_epoch(0)
    assert torch.equal(again[0]["flow"], crops[0])
    assert any(not torch.equal(crops[0], crops[e]) for e in (1, 2, 3))


def test_dataset_size_errors(tmp_path):
    folder = make_folder(tmp_path, n=2)
    write_flo(folder / "00001_flow.flo", np.zeros((64, 32, 2), np.float32))
    samples, _ = find_samples(folder)
    with pytest.raises(DataError, match=r"00001_flow.flo: flow is 64x32 \(HxW\) but 00001_img1.ppm is 64x64"):
        FlowDataset(samples)[0]
    with pytest.raises(DataError, match=r"00002_img1.ppm: image 64x64 \(HxW\) is smaller than the crop size 48x96"):
        FlowDataset(samples, crop=(48, 96))[1]


def test_make_loader(tmp_path):
    samples, _ = find_samples(make_folder(tmp_path, n=3))
    dataset = FlowDataset(samples)
    with pytest.raises(DataError, match="batch size 4 is larger than the 3 samples"):
        make_loader(dataset, batch_size=4, shuffle=True, seed=0, drop_last=True)
    order = lambda: [i for b in make_loader(dataset, batch_size=2, shuffle=True, seed=9, drop_last=False)  # noqa: E731
                     for i in b["id"]]
    first = order()
    assert sorted(first) == ids(samples) and order() == first
    with pytest.raises(DataError, match="initialized torch.distributed"):
        make_loader(dataset, batch_size=1, shuffle=True, seed=0, drop_last=True, distributed=True)


def test_make_loader_distributed(tmp_path):
    import torch.distributed as dist

    samples, _ = find_samples(make_folder(tmp_path / "data", n=3))
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
