"""Splits of a folder: the official file, the reference's 80/20 exactly, seeded, saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowcli.data.folders import Sample, find_samples
from flowcli.data.splits import load_split, save_split, split_samples
from flowcli.errors import DataError


def fake_samples(n: int) -> list[Sample]:
    return [Sample(f"{i:05d}", Path(f"{i:05d}_img1.ppm"), Path(f"{i:05d}_img2.ppm"), Path(f"{i:05d}_flow.flo"))
            for i in range(1, n + 1)]


def ids(samples) -> list[str]:
    return [s.id for s in samples]


def test_official_split_file_honoured(tmp_path, make_chairs_folder):
    folder = make_chairs_folder(tmp_path / "data")
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


def test_official_split_labels_unpadded_numeric_ids_in_number_order(tmp_path):
    samples = [Sample(str(i), Path(f"{i}_img1.ppm"), Path(f"{i}_img2.ppm"), Path(f"{i}_flow.flo")) for i in range(1, 13)]
    labels = ["1"] * 12
    labels[9] = "2"  # line 10: pair 10, which text order puts second ("1", "10", "11", "12", "2", ...)
    (tmp_path / "FlyingChairs_train_val.txt").write_text("\n".join(labels) + "\n")
    parts = split_samples(samples, split="official", folder=tmp_path)
    assert ids(parts["val"]) == ["10"] and len(parts["train"]) == 11


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
