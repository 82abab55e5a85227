"""Flying Chairs samples as a torch Dataset (decoded, optionally cropped and cached) and its loader."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from ..io import read_image_pair
from .folders import Sample
from .layouts.common import read_sample_flow


def _channels_first(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> contiguous (C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class FlowDataset(torch.utils.data.Dataset):
    """Items {"img1", "img2": (3, H, W) float in [0, 1], "flow": (2, H, W), "valid": (H, W), "id"}.

    `crop` = (height, width) takes a random crop, the same for a given (seed, index, epoch); call
    `set_epoch` before each epoch (workers must not be persistent for it to reach them).
    `cache_bytes` > 0 keeps decoded pairs in memory until they hold that many bytes (per worker
    process, so only useful without workers); the full Flying Chairs set decoded is ~67 GB.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        cache_bytes: int = 0,
    ) -> None:
        if crop is not None and (len(crop) != 2 or min(crop) < 1):
            raise DataError(f"crop must be (height, width) of positive sizes, got {crop}")
        self.samples = list(samples)
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, ...]] = {}
        self._cache_left = cache_bytes

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self, index: int) -> tuple[np.ndarray, ...]:
        if index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        img1, img2 = read_image_pair(sample.img1, sample.img2)
        flow, valid = read_sample_flow(sample)  # .flo or KITTI PNG, unknown pixels masked
        if flow.shape[:2] != img1.shape[:2]:
            raise DataError(
                f"{sample.flow}: flow is {flow.shape[0]}x{flow.shape[1]} (HxW) but {sample.img1.name}"
                f" is {img1.shape[0]}x{img1.shape[1]}"
            )
        arrays = (img1, img2, flow, valid)
        size = sum(a.nbytes for a in arrays)
        if size <= self._cache_left:
            self._cache[index] = arrays
            self._cache_left -= size
        return arrays

    def _window(self, index: int, height: int, width: int) -> tuple[slice, slice]:
        if self.crop is None:
            return slice(None), slice(None)
        crop_h, crop_w = self.crop
        if height < crop_h or width < crop_w:
            raise DataError(
                f"{self.samples[index].img1}: image {height}x{width} (HxW) is smaller than the crop size"
                f" {crop_h}x{crop_w}"
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
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader; with `distributed`, a DistributedSampler (call its `set_epoch`);
    `pin_memory` for a CUDA consumer (a copy from pageable memory waits for the GPU's queued work)."""
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
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )


def read_occlusion(sample, size: tuple[int, int]) -> torch.Tensor | None:
    """(H, W) bool ground-truth occlusion of a sample from `<id>_occ.png` beside its flow (as
    `flowcli synth` writes it; True = hidden in image 2 or leaving the frame), or None when absent;
    `size` (H, W) is the flow's, which the mask must match."""
    from ..io import read_mask

    path = sample.flow.with_name(f"{Path(sample.id).name}_occ.png")  # ids of nested layouts hold a scene/
    if not path.is_file():
        return None
    mask = read_mask(path)
    height, width = size
    if mask.shape != (height, width):
        raise DataError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but the flow is {height}x{width}")
    return torch.from_numpy(mask)
