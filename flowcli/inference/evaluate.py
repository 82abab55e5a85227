"""Evaluation: EPE (the reference mean_epe), 1/3/5 px accuracy and model time per image.

On a folder it evaluates one part of a split (by default the test part of the split that trained
the weights, when the weights sit in a run folder with split.json); without a folder it evaluates
a fixed, seeded generated test set that training never sees.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..errors import DataError
from ..metrics import EpeTally
from .options import InferenceOptions

TEST_SEED = 2_024_113  # generated test scenes: neither training nor validation seeds reach it
PARTS = ("test", "val", "train", "all")


def folder_pairs(data_dir: Path, *, part: str, scheme: str, seed: int, weights: str | None,
                 strict: bool = False):
    """The samples of one part of a folder split, reusing a run folder's split.json when present."""
    from ..data.folders import find_samples
    from ..data.splits import load_split, split_samples

    samples, incomplete = find_samples(data_dir, strict=strict)
    if part == "all":
        return samples, incomplete
    run_split = Path(weights).parent / "split.json" if weights not in (None, "random") else None
    if scheme == "auto" and run_split is not None and run_split.is_file():
        parts = load_split(run_split, samples)
    else:
        parts = split_samples(samples, split=scheme, seed=seed, folder=data_dir)
    if part not in parts or not parts[part]:
        raise DataError(f"{data_dir}: the {scheme} split has no {part!r} part")
    return parts[part], incomplete


def folder_batches(samples) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    from ..data.dataset import FlowDataset

    dataset = FlowDataset(samples)
    for i in range(len(dataset)):
        item = dataset[i]
        yield item["id"], item["img1"][None], item["img2"][None], item["flow"][None], item["valid"][None]


def generated_batches(count: int, size: tuple[int, int], device):
    from ..data.synth import SceneGenerator, SynthConfig

    generator = SceneGenerator(SynthConfig(height=size[0], width=size[1]), seed=TEST_SEED, device=device)
    for i in range(count):
        img1, img2, flow = generator.batch(1)
        yield f"gen{i:05d}", img1, img2, flow, torch.ones_like(flow[:, 0], dtype=torch.bool)


def evaluate(
    *,
    data_dir: str | os.PathLike | None = None,
    part: str = "test",
    scheme: str = "auto",
    seed: int = 0,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    options: InferenceOptions = InferenceOptions(),
    count: int = 64,
    size: tuple[int, int] = (384, 512),
    warmup: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    strict: bool = False,
) -> dict:
    """Evaluate weights; returns {'epe', '1px', '3px', '5px', 'ms_per_image', 'samples': [...], ...}."""
    from .engine import load_predictor

    if part not in PARTS:
        raise DataError(f"unknown split part {part!r}: choose one of {', '.join(PARTS)}")
    predictor = load_predictor(weights, device=device, dtype=dtype, options=options)
    torch_device = predictor.device
    incomplete: list[str] = []
    if data_dir is not None:
        samples, incomplete = folder_pairs(Path(data_dir), part=part, scheme=scheme, seed=seed,
                                           weights=None if weights is None else str(weights), strict=strict)
        total, batches = len(samples), folder_batches(samples)
        source = f"{data_dir} ({scheme} split, {part})"
    else:
        total, batches = count, generated_batches(count, size, torch_device)
        source = f"generated test set (seed {TEST_SEED}, {count} pairs, {size[0]}x{size[1]})"
    if total == 0:
        raise DataError("nothing to evaluate")

    per_sample, times = [], []
    tally, invalid_sum = EpeTally(), 0
    for index, (sample_id, img1, img2, flow, valid) in enumerate(batches):
        if index < warmup:  # the first calls pay for allocation and graph capture
            predictor(img1, img2)
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
        start = time.perf_counter()
        pred = predictor(img1, img2)
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
        times.append(time.perf_counter() - start)
        err = tally.add(pred.float().cpu(), flow.float().cpu(), valid.cpu())
        invalid_sum += int((~valid).sum())
        per_sample.append({"id": sample_id, "epe": err.mean().item() if err.numel() else float("nan"),
                           "valid_pixels": err.numel()})
        if on_progress:
            on_progress(index + 1, total)
    if tally.valid == 0:
        raise DataError("no pixel with valid ground truth in the evaluated pairs")
    times.sort()
    return {
        "source": source,
        "weights": str(weights) if weights is not None else "default",
        "device": str(torch_device),
        "dtype": dtype,
        **options.as_dict(),
        "pairs": len(per_sample),
        **tally.result(),
        "ms_per_image": 1000 * sum(times) / len(times),
        "median_ms_per_image": 1000 * times[len(times) // 2],
        "invalid_pixels": invalid_sum,
        "incomplete_triplets": incomplete,
        "samples": per_sample,
    }
