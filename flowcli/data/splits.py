"""Splits of a Flying Chairs folder into train/val/test: the official file, the reference's 80/20,
or a seeded permutation; saved beside a run so evaluation reuses the same pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..io import atomic_path
from .folders import Sample, listing

SPLIT_FILE = "FlyingChairs_train_val.txt"
SCHEMES = ("auto", "official", "reference", "seeded")  # how a folder is split; eval also takes "all"
PARTS = ("train", "val", "test")
EVERY_PAIR = "all"  # evaluation without a split: every pair of the folder
REFERENCE_SEED = 42
REFERENCE_TRAIN_FRACTION = 0.8



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
        raise DataError(f"{split_file}: expected 1 (train) or 2 (val) on every line ({listing(bad)})")
    digits = all(s.id.isdigit() for s in samples)  # ids 1, 2, ..., 10 are in number order, not text order
    ordered = sorted(samples, key=(lambda s: int(s.id)) if digits else (lambda s: s.id))
    if len(labels) != len(samples):
        # A subset of the full dataset keeps the original ids: line k labels pair k.
        numbered = [int(s.id) for s in ordered] if digits else []
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
    import torch  # here, so that the CLI reads SCHEMES without loading torch

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
    import torch

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
    raise DataError(f"split={split!r} is not a split: choose one of {', '.join(SCHEMES)}")


def save_split(path: str | Path, split: dict[str, Sequence[Sample]], folder: str | Path | None = None) -> None:
    """Write the ids of each part as JSON, atomically, so evaluation reuses the same pairs; `folder`,
    the dataset's, is recorded so that another folder is not split by these ids (load_split)."""
    path = Path(path)
    parts = {part: [s.id for s in samples] for part, samples in split.items()}
    payload = {"folder": str(Path(folder).resolve()), "parts": parts} if folder is not None else parts
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=1) + "\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot write the split ({exc})") from None


def load_split(path: str | Path, samples: Sequence[Sample],
               folder: str | Path | None = None) -> dict[str, list[Sample]] | None:
    """Read a split written by `save_split`, resolving its ids against `samples`. Given `folder`
    (the samples'), None when the file was made for another dataset: it records another folder
    and not all its ids are here. A moved dataset (another machine, another mount) keeps its split,
    and so do files from before 0.14.0, which record no folder."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable split file ({exc})") from None
    recorded = payload.get("folder") if isinstance(payload, dict) and "parts" in payload else None
    payload = _parts(payload)
    if not isinstance(payload, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in payload.values()
    ):
        raise DataError(f"{path}: expected a JSON object of id lists per part")
    by_id = {s.id: s for s in samples}
    missing = [i for ids in payload.values() for i in ids if i not in by_id]
    if missing and folder is not None and recorded is not None and Path(recorded) != Path(folder).resolve():
        return None
    if missing:
        raise DataError(
            f"{path}: {len(missing)} ids are not in the dataset folder ({listing(missing)})"
        )
    return {part: [by_id[i] for i in ids] for part, ids in payload.items()}


def _parts(payload):
    """The {part: ids} of a split file: the whole file before 0.14.0, its "parts" since."""
    return payload["parts"] if isinstance(payload, dict) and "parts" in payload and "folder" in payload else payload

