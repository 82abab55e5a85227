"""An exponential moving average of the weights (`--ema DECAY`): the run validates and saves it in
place of the raw weights, which go on training. It damps the noise of the last steps: checkpoints a
few epochs apart swing the proxies by as much as a CPU fine-tune gains (weights/README.md)."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

from ..errors import CheckpointError

PREFIX = "ema."  # the average's tensors in state.safetensors, beside the raw weights ("model.")


class WeightAverage:
    """The average of every floating-point tensor of a model's state (parameters and BatchNorm's
    running statistics), updated after each optimizer step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        state = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
        self.decay = decay
        self.updates = 0
        self.names = list(state)
        self.live = [t.detach() for t in state.values()]  # the model's own tensors, updated in place
        self.tensors = [t.clone() for t in self.live]

    def current_decay(self) -> float:
        """The configured decay, lower for the first updates: the average then follows the weights
        closely instead of staying near where the run started."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        torch._foreach_lerp_(self.tensors, self.live, 1 - self.current_decay())

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the average inside the block, its own weights again after it."""
        own = [t.clone() for t in self.live]
        torch._foreach_copy_(self.live, self.tensors)
        try:
            yield
        finally:
            torch._foreach_copy_(self.live, own)

    def state(self) -> dict[str, torch.Tensor]:
        return {PREFIX + name: t.cpu().contiguous() for name, t in zip(self.names, self.tensors)}

    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        """What state() saved (with PREFIX), and the number of updates behind it."""
        missing = [name for name in self.names if PREFIX + name not in tensors]
        if missing:
            raise CheckpointError(f"the run's saved state holds no average of {', '.join(missing[:3])}")
        for name, tensor in zip(self.names, self.tensors):
            tensor.copy_(tensors[PREFIX + name])
        self.updates = updates


def holding_average(average: WeightAverage | None):
    """average.swapped_in(), or a block that changes nothing when the run keeps no average."""
    return average.swapped_in() if average is not None else nullcontext()
