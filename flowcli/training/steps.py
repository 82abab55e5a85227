"""Reading a training step's figures without stalling the device.

Asking a CUDA tensor for its value (`.item()`) or timing a step with `torch.cuda.synchronize` makes
the host wait until the GPU has run out of queued work, so every step would start on an idle GPU.
Instead each step is collected one step late: its loss and timings are read after the next step has
been queued, when the GPU is still busy with that one. On CUDA the step's time is the GPU's own
(events); on the CPU, where the work runs on the host in order, it is the host's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


class StepClock:
    """Marks on the device's timeline: `mark()` now, `seconds(a, b)` between two marks once b is done."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def wait(self, mark) -> None:
        """Block until the work queued before `mark` has run."""
        if self.cuda:
            mark.synchronize()

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1000 if self.cuda else end - start


@dataclass(frozen=True)
class QueuedStep:
    """A step that has been queued but not read: its loss and EPE are still device tensors."""

    epoch: int  # 1-based, as logged
    step: int  # 1-based
    images: int
    loss: torch.Tensor
    epe: torch.Tensor
    started: object  # StepClock marks: before the batch was drawn,
    data_ready: object  # once it was on the device (and augmented),
    done: object  # after the optimizer's update
    lr: float


@dataclass(frozen=True)
class StepFigures:
    """A collected step, in host numbers."""

    epoch: int
    step: int
    images: int
    loss: float
    epe: float
    data_s: float
    step_s: float
    lr: float


def collect(queued: QueuedStep, clock: StepClock) -> StepFigures:
    """Wait for a queued step to finish and read it (the only host sync of a CUDA step)."""
    clock.wait(queued.done)
    return StepFigures(epoch=queued.epoch, step=queued.step, images=queued.images, loss=queued.loss.item(),
                       epe=queued.epe.item(), data_s=clock.seconds(queued.started, queued.data_ready),
                       step_s=clock.seconds(queued.started, queued.done), lr=queued.lr)
