"""The learning-rate schedule and when to stop: where a step lies in the run (its share of the
steps or of the minutes, whichever is larger), the rate at that point, the check-in that ends a
run whose time is spent or whose loss went non-finite, and DDP ranks stopping together."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import TrainingError
from .config import TrainConfig


@dataclass(frozen=True)
class Schedule:
    """Where a step lies in the run, in [0, 1]: the larger of its share of the steps and of the time.

    `anchor` (step, seconds, progress) is where an extended run resumed; the schedule left there is
    stretched over the new remainder."""

    total_steps: int
    budget_s: float | None
    anchor: tuple[int, float, float] = (0, 0.0, 0.0)

    def progress(self, step: int, elapsed_s: float) -> float:
        start, start_s, done = self.anchor
        share = (step - start) / max(self.total_steps - start, 1)
        if self.budget_s:
            share = max(share, (elapsed_s - start_s) / max(self.budget_s - start_s, 1e-9))
        return done + (1 - done) * share


def lr_at(config: TrainConfig, progress: float) -> float:
    """OneCycle-style: linear warm-up to lr, then cosine decay to 1% of it; progress in [0, 1]."""
    if config.schedule == "constant":
        return config.lr
    if progress < config.warmup:
        return config.lr * max(progress / config.warmup, 0.01)
    rest = (progress - config.warmup) / max(1e-9, 1 - config.warmup)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0))))


def budget_s(minutes: float | None) -> float | None:
    return minutes * 60 if minutes else None


DDP_TALK_EVERY = 8  # steps between the DDP ranks' check-ins: each one waits for the queued work


@dataclass(frozen=True)
class CheckIn:
    spent: bool  # the time budget is spent
    failed: bool  # a loss went non-finite, here or (under DDP) on another rank
    elapsed_s: float | None = None  # seconds since the start, the same on every rank; None: no talk


def check_in(budget_s: float | None, clock: float, world: int, device: torch.device, *, failed: bool,
             step: int | None = None) -> CheckIn:
    """Whether the run must stop. Alone: a host comparison (a device tensor's .item() would wait for
    the queued steps). Under DDP every rank must agree: their clocks differ, and a rank that stopped
    alone would leave the others waiting in the next all-reduce. Within an epoch (`step` given) they
    talk every DDP_TALK_EVERY steps, and always at its end; they also agree on the elapsed time (the
    latest rank's), which the schedule then uses, so that every rank sets the same learning rate."""
    elapsed = time.perf_counter() - clock
    spent = bool(budget_s) and elapsed > budget_s
    if world == 1:
        return CheckIn(spent, failed, elapsed)
    if step is not None and (step + 1) % DDP_TALK_EVERY:
        return CheckIn(False, False)
    flags = torch.tensor([float(spent), float(failed), elapsed], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    spent, failed, elapsed = flags.tolist()
    return CheckIn(bool(spent), bool(failed), elapsed)


@contextmanager
def ranks_stop_together(world: int, device: torch.device) -> Iterator[None]:
    """Under DDP, a block that may fail on some ranks only (rank 0 making the run folder): at its end
    the ranks tell each other, and where another rank failed this one stops too, with one error,
    instead of waiting for it in the next collective (gloo's 30-minute timeout)."""
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if world > 1:
            flag = torch.tensor([float(failed)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() and not failed:
                raise TrainingError("another rank could not set up the run (its error says why); stopping")
