"""Flying Chairs folders: find the triplets, split them, load them as a torch Dataset.

A Flying Chairs folder holds `<id>_img1.<ext>`, `<id>_img2.<ext>` and `<id>_flow.flo` per pair
(ext one of .ppm, .png, .jpg). Every public function raises `DataError` naming the folder or file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import DataError
from .io import atomic_path, read_flow, read_image_pair

IMAGE_EXTENSIONS = (".ppm", ".png", ".jpg")
SPLIT_FILE = "FlyingChairs_train_val.txt"
SPLIT_PARTS = ("train", "val", "test")
REFERENCE_SEED = 42
REFERENCE_TRAIN_FRACTION = 0.8
_NAME = re.compile(r"^(?P<id>.+)_(?P<kind>img1|img2|flow)(?P<ext>\.[^.]+)$")
_LISTED = 5  # how many offending ids an error message names before "and N more"


@dataclass(frozen=True)
class Sample:
    id: str
    img1: Path
    img2: Path
    flow: Path


def _listing(items: Sequence[str], limit: int = _LISTED) -> str:
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"


def _complete(folder: Path, pair_id: str, parts: dict[str, set[str]]) -> Sample | str:
    """The sample for `pair_id`, or a description of what it lacks."""
    img1, img2, flow = (parts.get(kind, set()) for kind in ("img1", "img2", "flow"))
    ext = next((e for e in IMAGE_EXTENSIONS if e in img1 and e in img2), None)
    if ext is not None and flow:
        return Sample(pair_id, folder / f"{pair_id}_img1{ext}", folder / f"{pair_id}_img2{ext}",
                      folder / f"{pair_id}_flow.flo")
    ext = next((e for e in IMAGE_EXTENSIONS if e in img1 | img2), IMAGE_EXTENSIONS[0])
    wanted = {"img1": (ext, img1), "img2": (ext, img2), "flow": (".flo", flow)}
    missing = [f"{pair_id}_{kind}{e}" for kind, (e, have) in wanted.items() if e not in have]
    return f"{pair_id}: missing {', '.join(missing)}"


def find_samples(folder: str | Path, *, strict: bool = False) -> tuple[list[Sample], list[str]]:
    """Complete triplets of `folder` sorted by id, and a description of each incomplete one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found: dict[str, dict[str, set[str]]] = {}
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        ext, kind = match["ext"], match["kind"]
        if ext not in ((".flo",) if kind == "flow" else IMAGE_EXTENSIONS):
            continue
        found.setdefault(match["id"], {}).setdefault(kind, set()).add(ext)
    if not found:
        raise DataError(
            f"{folder}: no Flying Chairs pairs found"
            " (expected <id>_img1.ppm, <id>_img2.ppm, <id>_flow.flo)"
        )
    samples, incomplete = [], []
    for pair_id in sorted(found):
        result = _complete(folder, pair_id, found[pair_id])
        (samples if isinstance(result, Sample) else incomplete).append(result)
    if not samples:
        raise DataError(f"{folder}: no complete Flying Chairs triplet ({_listing(incomplete)})")
    if strict and incomplete:
        raise DataError(f"{folder}: {len(incomplete)} incomplete triplets ({_listing(incomplete)})")
    return samples, incomplete


# ---- splits ----------------------------------------------------------------------------------


def _official_file(folder: Path | None) -> Path | None:
    if folder is None:
        return None
    folder = Path(folder)
    return next((p for p in (folder / SPLIT_FILE, folder.parent / SPLIT_FILE) if p.is_file()), None)


def official_split(samples: Sequence[Sample], split_file: Path) -> dict[str, list[Sample]]:
    """The split of `FlyingChairs_train_val.txt`: line i (1 = train, 2 = val) is the i-th sorted pair.

    The official split has no separate test part: "test" is the validation set.
    """
    labels = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    bad = [f"line {i + 1}: {v!r}" for i, v in enumerate(labels) if v not in ("1", "2")]
    if bad:
        raise DataError(f"{split_file}: expected 1 (train) or 2 (val) on every line ({_listing(bad)})")
    ordered = sorted(samples, key=lambda s: s.id)
    if len(labels) != len(samples):
        # A subset of the full dataset keeps the original ids: line k labels pair k.
        numbered = [int(s.id) for s in ordered] if all(s.id.isdigit() for s in ordered) else []
        if numbered and 0 < min(numbered) and max(numbered) <= len(labels):
            val = [s for s, k in zip(ordered, numbered) if labels[k - 1] == "2"]
            train = [s for s, k in zip(ordered, numbered) if labels[k - 1] == "1"]
            return {"train": train, "val": val, "test": list(val)}
        raise DataError(
            f"{split_file}: {len(labels)} lines but the folder has {len(samples)} pairs; the official"
            " split lists every pair of the full dataset (use the seeded split for a subset)"
        )
    val = [s for s, v in zip(ordered, labels) if v == "2"]
    return {"train": [s for s, v in zip(ordered, labels) if v == "1"], "val": val, "test": list(val)}


def reference_split(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Reproduce the reference split: sort by flow file name, then 80/20 `random_split`, seed 42.

    Exactly: `train_n = int(0.8 * n)`, `random_split(samples, [train_n, n - train_n],
    generator=torch.Generator().manual_seed(42))`. Both the integer and the fractional form
    (`[0.8, 0.2]`) draw the same `randperm(n)`; they differ only in where they cut it when
    `0.8 * n` is not a whole number (fractions floor both parts, then give the remainder to
    train first). For the real 1485 pairs both give 1188 train / 297 test, the same pairs.
    The reference reported train and test only: "val" here is the same pairs as "test", so
    choosing a model on "val" also tunes on the test pairs. The reference listed every
    `*_flow.flo`: pass all pairs (a dropped incomplete triplet changes n, hence every part).
    """
    ordered = sorted(samples, key=lambda s: s.flow.name)  # the reference globbed `*_flow.flo`
    train_n = int(REFERENCE_TRAIN_FRACTION * len(ordered))
    generator = torch.Generator().manual_seed(REFERENCE_SEED)
    train, test = torch.utils.data.random_split(
        ordered, [train_n, len(ordered) - train_n], generator=generator
    )
    test_samples = [ordered[i] for i in test.indices]
    train_samples = [ordered[i] for i in train.indices]
    return {"train": train_samples, "val": test_samples, "test": list(test_samples)}


def seeded_split(
    samples: Sequence[Sample], *, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Sample]]:
    """A permutation from `torch.Generator().manual_seed(seed)` cut into train/val/test.

    val and test get `round(fraction * n)` pairs (at least one if their fraction is positive and
    there are enough pairs), train the rest; each part is sorted by id. The CPU generator makes it
    the same on every machine.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(
            f"split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}"
        )
    ordered = sorted(samples, key=lambda s: s.id)
    n = len(ordered)
    sizes = [max(int(round(f * n)), 1 if f > 0 and n >= 3 else 0) for f in fractions[1:]]
    if sum(sizes) > n:
        raise DataError(f"cannot split {n} pairs into fractions {tuple(fractions)}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val, n_test = sizes
    cuts = {"train": order[: n - n_val - n_test], "val": order[n - n_val - n_test : n - n_test],
            "test": order[n - n_test :]}
    return {part: [ordered[i] for i in sorted(idx)] for part, idx in cuts.items()}


def split_samples(
    samples: Sequence[Sample],
    *,
    split: str = "auto",
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    folder: str | Path | None = None,
) -> dict[str, list[Sample]]:
    """Split into {"train", "val", "test"} by `split`: official, reference, seeded or auto.

    auto = official when `FlyingChairs_train_val.txt` is in `folder` or its parent, else seeded.
    """
    split_file = _official_file(Path(folder) if folder is not None else None)
    if split == "auto":
        split = "official" if split_file else "seeded"
    if split == "official":
        if split_file is None:
            where = f"in {folder} or its parent" if folder is not None else "(no dataset folder given)"
            raise DataError(f"official split requested but no {SPLIT_FILE} found {where}")
        return official_split(samples, split_file)
    if split == "reference":
        return reference_split(samples)
    if split == "seeded":
        return seeded_split(samples, seed=seed, fractions=fractions)
    raise DataError(f"unknown split {split!r}: expected auto, official, reference or seeded")


def save_split(path: str | Path, split: dict[str, Sequence[Sample]]) -> None:
    """Write the ids of each part as JSON, atomically, so evaluation reuses the same pairs."""
    path = Path(path)
    payload = {part: [s.id for s in samples] for part, samples in split.items()}
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=1) + "\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot write the split ({exc})") from None


def load_split(path: str | Path, samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Read a split written by `save_split`, resolving its ids against `samples`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable split file ({exc})") from None
    if not isinstance(payload, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in payload.values()
    ):
        raise DataError(f"{path}: expected a JSON object of id lists per part")
    by_id = {s.id: s for s in samples}
    missing = [i for ids in payload.values() for i in ids if i not in by_id]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} ids are not in the dataset folder ({_listing(missing)})"
        )
    return {part: [by_id[i] for i in ids] for part, ids in payload.items()}


# ---- dataset and loader ----------------------------------------------------------------------


def _channels_first(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> contiguous (C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class FlowDataset(torch.utils.data.Dataset):
    """Items {"img1", "img2": (3, H, W) float in [0, 1], "flow": (2, H, W), "valid": (H, W), "id"}.

    `crop` = (height, width) takes a random crop, the same for a given (seed, index, epoch); call
    `set_epoch` before each epoch (workers must not be persistent for it to reach them).
    `cache=True` keeps the decoded arrays in memory (per worker process).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        cache: bool = False,
    ) -> None:
        if crop is not None and (len(crop) != 2 or min(crop) < 1):
            raise DataError(f"crop must be (height, width) of positive sizes, got {crop}")
        self.samples = list(samples)
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, ...]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self, index: int) -> tuple[np.ndarray, ...]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        img1, img2 = read_image_pair(sample.img1, sample.img2)
        flow, valid = read_flow(sample.flow)
        if flow.shape[:2] != img1.shape[:2]:
            raise DataError(
                f"{sample.flow}: flow is {flow.shape[1]}x{flow.shape[0]} but {sample.img1.name}"
                f" is {img1.shape[1]}x{img1.shape[0]}"
            )
        arrays = (img1, img2, flow, valid)
        if self._cache is not None:
            self._cache[index] = arrays
        return arrays

    def _window(self, index: int, height: int, width: int) -> tuple[slice, slice]:
        if self.crop is None:
            return slice(None), slice(None)
        crop_h, crop_w = self.crop
        if height < crop_h or width < crop_w:
            raise DataError(
                f"{self.samples[index].img1}: image {width}x{height} is smaller than the crop size"
                f" {crop_w}x{crop_h}"
            )
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        return slice(top, top + crop_h), slice(left, left + crop_w)

    def __getitem__(self, index: int) -> dict:
        img1, img2, flow, valid = self._load(index)
        rows, cols = self._window(index, *img1.shape[:2])
        return {
            "img1": _channels_first(img1[rows, cols]).float() / 255,  # (3, H, W)
            "img2": _channels_first(img2[rows, cols]).float() / 255,
            "flow": _channels_first(flow[rows, cols]),  # (2, H, W)
            "valid": torch.from_numpy(np.ascontiguousarray(valid[rows, cols])),  # (H, W) bool
            "id": self.samples[index].id,
        }


def make_loader(
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool,
    distributed: bool = False,
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader; with `distributed`, a DistributedSampler (call its `set_epoch`)."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    sampler = None
    if distributed:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise DataError("distributed loading needs an initialized torch.distributed process group")
        sampler = torch.utils.data.DistributedSampler(
            dataset, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    available = len(sampler) if sampler is not None else len(dataset)
    if drop_last and batch_size > available:
        where = " per process" if distributed else ""
        raise DataError(
            f"batch size {batch_size} is larger than the {available} samples{where} of the dataset;"
            " with drop_last no batch would be formed"
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
