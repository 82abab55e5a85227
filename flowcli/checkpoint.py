"""Weights files (safetensors with the ModelConfig in the metadata, so a file alone rebuilds its model)
and training-state files (model and optimizer, for --resume)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import CheckpointError
from .io import atomic_path
from .model import FlowNetS, ModelConfig

FORMAT = "flowcli-weights/1"
def installed_weights_dirs() -> list[Path]:
    """Where a regular install put the shipped files (pyproject.toml's data-files, under its prefix,
    whatever the scheme: /usr/local, the user base, --prefix): read from the install's record."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        recorded = files("flowcli") or []
    except PackageNotFoundError:
        return []
    return [Path(f.locate()).resolve().parent for f in recorded if f.name == "flownets.safetensors"]


def find_weights_dir(package_root: Path, installed=installed_weights_dirs) -> Path:
    """The repository's weights/ beside the package (a clone, an editable install), else the folder
    a regular install put them in (pip install .); without either, weights/ (the error names it)."""
    beside = package_root / "weights"
    if (beside / "flownets.safetensors").is_file():
        return beside
    return next((folder for folder in installed() if (folder / "flownets.safetensors").is_file()), beside)


WEIGHTS_DIR = find_weights_dir(Path(__file__).resolve().parent.parent)
# The shipped files by name: the small network is the default (fast on a CPU); the wide one costs
# ~2x the CPU time with the defaults (2.6x network alone) for a lower error (weights/README.md).
SHIPPED = {"fast": WEIGHTS_DIR / "flownets.safetensors", "accurate": WEIGHTS_DIR / "flownets-accurate.safetensors"}
DEFAULT_NAME = "fast"
DEFAULT_WEIGHTS = SHIPPED[DEFAULT_NAME]
RANDOM = "random"  # a seeded, untrained model: for smoke tests only
# Its architecture unless one is given: the shipped default's, so that smoke tests and timings run
# the size users run (and, in tests, a sixteenth of the paper's width 1.0 in parameters).
RANDOM_CONFIG = ModelConfig(width=0.25, batch_norm=True, upsampler="convex")


def is_named(weights: str | os.PathLike) -> bool:
    """Whether `weights` names no file but a shipped network or the untrained one: only a str can."""
    return isinstance(weights, str) and (weights in SHIPPED or weights == RANDOM)


def weights_path(weights: str | os.PathLike | None) -> Path:
    """The file `weights` names: None is the shipped default, a str in SHIPPED that shipped file
    (a Path, or "./fast", is a file of that name), anything else a path."""
    if weights is None:
        return DEFAULT_WEIGHTS
    return SHIPPED[weights] if isinstance(weights, str) and weights in SHIPPED else Path(weights)


def weights_label(weights: str | os.PathLike | None) -> str:
    """How results name the weights they ran: a shipped network by its name (None: the default's), a
    file by its path as given."""
    return DEFAULT_NAME if weights is None else str(weights)


def save_weights(
    path: str | os.PathLike,
    model: FlowNetS,
    *,
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
) -> None:
    """Save model weights (optionally stored as fp16/bf16) with the architecture, atomically."""
    tensors = {
        name: t.detach().to("cpu", dtype=dtype if t.is_floating_point() else t.dtype).contiguous()
        for name, t in model.state_dict().items()
    }
    meta = {"format": FORMAT, "config": model.config.to_json(), **(metadata or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    meta, _ = _open_safetensors(path, tensors=False, unreadable="not a safetensors file")
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: not a flowcli weights file (no architecture in metadata)")
    return meta


def read_config(path: str | os.PathLike) -> ModelConfig:
    try:
        return ModelConfig.from_json(read_metadata(path)["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad architecture metadata ({exc})") from None


def load_state(model: FlowNetS, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Load tensors into `model`, raising one summarising CheckpointError on any mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} of another shape (e.g. {k}: file {tuple(state[k].shape)},"
                f" model {tuple(expected[k].shape)})"
            )
        raise CheckpointError(f"{source}: weights do not match the architecture: " + "; ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def load_model(
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    config: ModelConfig | None = None,
    seed: int = 0,
) -> FlowNetS:
    """Build a FlowNetS from a weights file (default: the shipped weights), in eval mode.

    `weights="random"` builds a seeded untrained model of `config` (default RANDOM_CONFIG; smoke tests only).
    """
    if weights is not None and str(weights) == RANDOM:
        torch.manual_seed(seed)
        model = FlowNetS(config or RANDOM_CONFIG)
        return model.to(device).eval()
    path = weights_path(weights)
    if weights is None and not path.is_file():
        raise CheckpointError(
            f"the shipped weights are missing ({path}): reinstall flowcli (pip install . or -e . from "
            "the repository, which has them in weights/); or pass weights=PATH (or weights=random for a smoke test)"
        )
    file_config = read_config(path)
    if config is not None:
        check_architecture(path, file_config, config)
    model = FlowNetS(file_config)
    load_state(model, read_state(path), path)
    return model.to(device).eval()


def check_architecture(path: str | os.PathLike, held: ModelConfig, asked: ModelConfig, *,
                       wanted: str = "{asked} was asked for") -> None:
    """Raise one CheckpointError unless the file at `path`, which holds `held`, holds `asked`;
    `wanted` says who asked (a template with {asked})."""
    if held.arch != asked.arch:
        raise CheckpointError(other_arch(path, held.arch, asked.arch))
    if held != asked:
        raise CheckpointError(f"{path}: holds {held}, but " + wanted.format(asked=asked))


def other_arch(path: str | os.PathLike, held: str, asked: str) -> str:
    """The one line for weights of one architecture asked to load into the other."""
    return (f"{path}: holds a {held!r} network, but arch={asked}: weights of one architecture "
            f"do not load into the other ({held!r} and {asked!r} differ in their layers)")


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable weights ({exc})") from None


def metadata_json(path: str | os.PathLike) -> dict:
    """All metadata of a weights file, with JSON values decoded where they are JSON."""
    out = {}
    for key, value in read_metadata(path).items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def save_training_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        extra: dict, more: dict[str, torch.Tensor] | None = None) -> None:
    """Model + optimizer tensors in one safetensors file (for --resume); scalars as JSON metadata;
    `more`: other tensors under their own names (prefixed, e.g. "ema.": see read_state_tensors)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update(more or {})
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    meta = {"param_groups": json.dumps(groups), "extra": json.dumps(extra)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_training_extra(path: str | os.PathLike) -> dict:
    """The `extra` of a training-state file (epoch, best validation EPE, ...) without its tensors."""
    return json.loads(_open_training_state(path, keys=False)[0]["extra"])


def load_training_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what save_training_state wrote into model and optimizer; returns its `extra`."""
    meta, tensors = _open_training_state(path, keys=True)
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["extra"])


def read_state_tensors(path: str | os.PathLike, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a training-state file whose names start with `prefix` (save_training_state's `more`)."""
    return {k: v for k, v in _open_training_state(path, keys=True)[1].items() if k.startswith(prefix)}


def _open_training_state(path: str | os.PathLike, *, keys: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no checkpoint to resume from ({path.name} is missing)")
    meta, tensors = _open_safetensors(path, tensors=keys, unreadable="unreadable training state")
    if "extra" not in meta or "param_groups" not in meta:
        raise CheckpointError(f"{path}: not a training-state file (no optimizer metadata)")
    return meta, tensors


def _open_safetensors(path: Path, *, tensors: bool, unreadable: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """A safetensors file's metadata (and its tensors if asked), or one CheckpointError saying `unreadable`."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            loaded = {k: handle.get_tensor(k) for k in handle.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: {unreadable} ({exc})") from None
    return meta, loaded
