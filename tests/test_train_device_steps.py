"""What keeps a GPU's training steps queued back to back, checked without a GPU: the generator's
thread hands batches across CUDA streams in the right order, and the compile-mode knob of the GPU
script's probes refuses what torch would not take."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from flowcli.errors import TrainingError
from flowcli.training.setup import compile_mode
from flowcli.training.sources import SideStream


def test_the_compile_mode_knob_is_unset_a_known_mode_or_refused(monkeypatch):
    monkeypatch.delenv("FLOWCLI_COMPILE_MODE", raising=False)
    assert compile_mode() is None
    monkeypatch.setenv("FLOWCLI_COMPILE_MODE", "")  # benchmarks/gpu_finetune.sh's probe without a mode
    assert compile_mode() is None
    monkeypatch.setenv("FLOWCLI_COMPILE_MODE", "reduce-overhead")
    assert compile_mode() == "reduce-overhead"
    monkeypatch.setenv("FLOWCLI_COMPILE_MODE", "fast")
    with pytest.raises(TrainingError, match="FLOWCLI_COMPILE_MODE=fast: choose one of default, reduce-overhead"):
        compile_mode()


def test_off_cuda_the_side_stream_only_calls_the_draw():
    side = SideStream(torch.device("cpu"))
    batch, ready = side.run(lambda i: (torch.full((1,), float(i)),), 3)
    assert ready is None and side.hand_over(batch, ready)[0].item() == 3.0


def test_on_cuda_a_batch_is_drawn_on_the_side_stream_and_the_training_stream_waits_for_it(monkeypatch):
    log = []

    class Event:
        def record(self, stream):
            log.append(("event recorded on", stream))

    class TrainingStream:
        def wait_event(self, event):
            log.append(("training waits for", type(event).__name__))

        def __repr__(self):
            return "training"

    class Tensor:
        device = torch.device("cuda", 0)

        def __init__(self, name):
            self.name = name

        def record_stream(self, stream):
            log.append((f"{self.name} used on", repr(stream)))

    @contextmanager
    def on_stream(stream):
        log.append(("enter", stream))
        yield
        log.append(("leave", stream))

    monkeypatch.setattr(torch.cuda, "Stream", lambda device: "side")
    monkeypatch.setattr(torch.cuda, "stream", on_stream)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: TrainingStream())

    def draw(i):
        log.append(("draw", i))
        return Tensor("img1"), Tensor("flow")

    side = SideStream(torch.device("cuda", 0))
    batch, ready = side.run(draw, 5)
    assert side.hand_over(batch, ready) is batch
    assert log == [("enter", "side"), ("draw", 5), ("event recorded on", "side"), ("leave", "side"),
                   ("training waits for", "Event"), ("img1 used on", "training"), ("flow used on", "training")]


def test_ddp_ranks_check_in_every_few_steps_and_stop_together(monkeypatch):
    from flowcli.training.schedule import DDP_TALK_EVERY, check_in

    talks = []

    def all_reduce(flags, op):  # another rank's loss went non-finite and its clock reads later: the MAX carries both here
        talks.append(flags.tolist())
        flags[1], flags[2] = 1.0, 2e9

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    spent = dict(budget_s=1.0, clock=-1e9, world=2, device=torch.device("cpu"), failed=False)  # long past the budget
    checks = [check_in(**spent, step=step) for step in range(2 * DDP_TALK_EVERY)]
    talked = [(step + 1) % DDP_TALK_EVERY == 0 for step in range(2 * DDP_TALK_EVERY)]
    assert [(c.spent, c.failed) for c in checks] == [(t, t) for t in talked]
    assert [c.elapsed_s for c in checks] == [2e9 if t else None for t in talked]  # the schedule's time: the latest rank's
    assert [talk[:2] for talk in talks] == [[1.0, 0.0], [1.0, 0.0]]  # the ranks talked twice, each time saying "spent"
    assert all(1e9 <= talk[2] < 2e9 for talk in talks)  # ... and each time gave its own clock
    assert check_in(**spent).failed and len(talks) == 3  # at an epoch's end they always do
    alone = check_in(**{**spent, "world": 1, "clock": 1e18}, step=7)
    assert (alone.spent, alone.failed) == (False, False) and len(talks) == 3  # alone: no talk
    assert check_in(**{**spent, "world": 1, "failed": True}, step=0).failed  # alone: at once
    alone = check_in(**{**spent, "world": 1}, step=0)  # alone: the budget is checked at every step
    assert (alone.spent, alone.failed) == (True, False) and alone.elapsed_s >= 1e9 and len(talks) == 3
    assert not check_in(**{**spent, "world": 1, "budget_s": None}, step=0).spent  # no budget: never spent
