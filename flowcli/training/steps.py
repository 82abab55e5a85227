"""Reading a training step's figures without stalling the device.

Asking a CUDA tensor for its value (`.item()`) or timing a step with `torch.cuda.synchronize` makes
the host wait until the GPU has run out of queued work, so every step would start on an idle GPU.
Instead a step's loss and EPE are copied to pinned host memory without blocking, and the step is
read one step late: once the next step is queued, the host waits for this step's copy alone (an
event), while the GPU goes on with the next. On CUDA the step's time is the GPU's own (events); on
the CPU, where the work runs on the host in order, it is the host's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


class StepClock:
    """Marks on the device's timeline, and the figures of a step brought to the host."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))  # this rank's GPU, not the current device
        return event

    def start(self, previous_done):
        """A step's first mark. On CUDA the previous step's end, so that time the GPU waits for the
        host counts as step time; on the CPU now (the host's bookkeeping between steps does not)."""
        return previous_done if self.cuda and previous_done is not None else self.mark()

    def to_host(self, *values: torch.Tensor) -> torch.Tensor:
        """The scalars as one host tensor. On CUDA a non-blocking copy into pinned memory: read it only
        after `wait` on a mark made after this call."""
        stacked = torch.stack([v.detach().float().reshape(()) for v in values])
        if not self.cuda:
            return stacked
        host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
        host.copy_(stacked, non_blocking=True)
        return host

    def wait(self, mark) -> None:
        """Block until the work queued before `mark` has run (on its stream only)."""
        if self.cuda:
            mark.synchronize()

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1000 if self.cuda else end - start


@dataclass(frozen=True)
class QueuedStep:
    """A step that has been queued but not read."""

    epoch: int  # 1-based, as logged
    step: int  # 1-based
    images: int
    values: torch.Tensor  # (loss, EPE), from StepClock.to_host
    started: object  # StepClock marks: the step's start,
    data_ready: object  # once its batch was on the device (and augmented),
    done: object  # after the optimizer's update and the copy of `values`
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
    """Wait for a queued step to finish and read it: the only host wait of a CUDA step."""
    clock.wait(queued.done)
    loss, epe = queued.values.tolist()
    return StepFigures(epoch=queued.epoch, step=queued.step, images=queued.images, loss=loss, epe=epe,
                       data_s=clock.seconds(queued.started, queued.data_ready),
                       step_s=clock.seconds(queued.started, queued.done), lr=queued.lr)
