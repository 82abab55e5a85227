"""A run folder's life: a new run never lands on another run unless asked, and a run that fails
before its first checkpoint leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import TrainingError
from ..io import atomic_path
from .config import TrainConfig

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

    def create(self) -> None:
        top = self.path
        while not top.parent.exists():
            top = top.parent
        self.created = None if self.path.exists() else top
        self.path.mkdir(parents=True, exist_ok=True)
        if self.overwrite:
            for name in RUN_FILES:  # only the run's own files: anything else in the folder stays
                (self.path / name).unlink(missing_ok=True)

    def discard(self) -> None:
        """Undo create(): remove the folders it made, or the run files it wrote into an existing one."""
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
    return json.loads(lines[-1]) if lines else {}


def append_log(folder: Path, record: dict) -> None:
    path = folder / "log.jsonl"
    with atomic_path(path) as tmp:
        previous = path.read_text() if path.exists() else ""
        tmp.write_text(previous + json.dumps(record) + "\n")
