"""A run folder's life: a new run never lands on another run unless asked, a run that fails before
its first checkpoint leaves nothing behind, and a resumed run starts from what its folder saved."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import read_training_extra
from ..errors import TrainingError
from ..io import atomic_path
from .config import TrainConfig, check_resumable, read_run_config, resumed_data
from .schedule import Schedule, budget_s

RUN_FILES = ("config.json", "log.jsonl", "last.safetensors", "best.safetensors", "state.safetensors", "split.json")


def holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


class NewRunFolder:
    """The folder of a new run: checked at once, made (or cleared of an old run, with overwrite) only
    once the run is set up, and removed again by discard() if no checkpoint was saved."""

    def __init__(self, path: Path, *, overwrite: bool):
        if path.exists() and not path.is_dir():
            raise TrainingError(f"{path}: is a file, expected a run folder")
        if holds_run(path) and not overwrite:
            raise TrainingError(f"{path}: already holds a training run; resume=True continues it, "
                                "overwrite=True replaces it")
        self.path = path
        self.overwrite = overwrite
        self.created: Path | None = None  # the outermost folder this run made, if any
        self.claimed = False  # whether create() made the folder this run's

    def create(self) -> None:
        """Make the folder this run's. Its config.json is created exclusively: another run started
        with the same folder since the check (two `train -o X` at once, or in the same second with
        the default name) is refused here rather than written over. With overwrite the old run's
        files go first, as asked, so two such runs at once are not kept apart."""
        top = self.path
        while not top.parent.exists():
            top = top.parent
        self.created = None if self.path.exists() else top
        self.claimed = True  # what this makes, even halfway, is this run's to discard
        self.path.mkdir(parents=True, exist_ok=True)
        if self.overwrite:
            for name in RUN_FILES:  # only the run's own files: anything else in the folder stays
                (self.path / name).unlink(missing_ok=True)
        try:
            (self.path / "config.json").open("x").close()  # written in full once the run starts
        except FileExistsError:
            self.created, self.claimed = None, False
            raise TrainingError(f"{self.path}: another training run started in this folder meanwhile; "
                                "choose another output folder") from None

    def discard(self) -> None:
        """Undo create(): remove the folders it made, or the run files it wrote into an existing one."""
        if not self.claimed:  # the folder is another run's
            return
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
        else:
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)


def write_run_config(folder: Path, config: TrainConfig, data_dir: str | None, *,
                     overrides: dict | None = None) -> None:
    """config.json: {"train": ..., "data_dir": ..., "overrides": the options that changed the preset};
    overrides=None (an extended run) keeps the ones already recorded."""
    path = folder / "config.json"
    if overrides is None:
        overrides = json.loads(path.read_text()).get("overrides", {}) if path.is_file() else {}
    record = {"train": json.loads(config.to_json()), "overrides": overrides, "data_dir": data_dir}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))


def last_log_record(folder: Path) -> dict:
    """The last line of log.jsonl ({} when there is none)."""
    path = folder / "log.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    try:
        return json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        raise TrainingError(f"{path}: the last line is not a JSON record; the log was edited or damaged") from None


def append_log(folder: Path, record: dict) -> None:
    path = folder / "log.jsonl"
    with atomic_path(path) as tmp:
        previous = path.read_text() if path.exists() else ""
        tmp.write_text(previous + json.dumps(record) + "\n")


@dataclass(frozen=True)
class Resumed:
    """What a resumed run starts from: its saved config, data and training-state scalars."""

    config: TrainConfig  # as saved (the run may extend it)
    data_dir: str | None  # where the data is now
    extra: dict  # epoch, best_val_epe, elapsed_s, stopped, schedule (the plan the last epoch followed)
    moved: bool = False  # the data folder moved since config.json was written

    @classmethod
    def read(cls, out: Path, config: TrainConfig | None, data_dir) -> "Resumed":
        saved, saved_data = read_run_config(out)
        if config is not None:
            check_resumable(saved, config, out)
        now = resumed_data(saved_data, data_dir, out)
        return cls(saved, now, read_training_extra(out / "state.safetensors"), moved=now != saved_data)

    @property
    def plan(self) -> dict:
        """The epochs, minutes and anchor of the schedule the saved epoch followed."""
        return self.extra.get("schedule") or {"epochs": self.config.epochs, "minutes": self.config.minutes,
                                              "anchor": [0, 0.0, 0.0]}

    def finished(self, config: TrainConfig) -> str | None:
        """Why the run has nothing left to train under `config` ("epochs" or "minutes"), else None."""
        if self.extra["epoch"] >= config.epochs:
            return "epochs"
        if config.minutes and (self.extra["elapsed_s"] >= config.minutes * 60 or (
                self.extra.get("stopped") == "minutes" and config.minutes <= (self.plan["minutes"] or 0))):
            return "minutes"
        return None

    def schedule(self, config: TrainConfig, steps_per_epoch: int) -> Schedule:
        """The saved schedule; re-anchored at the saved step when the run is extended."""
        plan = self.plan
        old = Schedule(plan["epochs"] * steps_per_epoch, budget_s(plan["minutes"]), tuple(plan["anchor"]))
        new = Schedule(config.epochs * steps_per_epoch, budget_s(config.minutes), old.anchor)
        if (new.total_steps, new.budget_s) == (old.total_steps, old.budget_s):
            return old
        step, spent = self.extra["epoch"] * steps_per_epoch, self.extra["elapsed_s"]
        return Schedule(new.total_steps, new.budget_s, (step, spent, min(1.0, old.progress(step, spent))))
