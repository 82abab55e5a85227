"""The one uniform draw that the generator, its texture banks and the augmentation all use."""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(generator: torch.Generator, low: float, high: float, shape: tuple[int, ...], *,
            dtype: torch.dtype = torch.float32) -> Tensor:
    """Draws from U[low, high) of `shape`, made by `generator` on its own device."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
