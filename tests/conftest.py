"""Shared pytest fixtures for the flowcli test suite.

Fixtures (all function-scoped unless noted):
- `shared_fixtures`: Path of the real Flying Chairs sample (../shared/fixtures/flyingchairs next to the
  repository); the test is skipped when it is absent.
- `make_pair`: factory `make_pair(height=64, width=80, shift=(2, 3), seed=0, folder=None, name="a")`
  writing `<folder>/<name>_img1.ppm` and `<folder>/<name>_img2.ppm` (frame 2 = frame 1 rolled by
  `shift` = (dy, dx) px) and returning the two paths; `folder` defaults to `tmp_path`.
- `tiny_pair`: `make_pair()` with the defaults: two structured 64x80 .ppm frames.
- `run_cli`: `run_cli(*args)` invokes `flowcli.cli.app` in-process with typer's CliRunner and returns
  the Result (`exit_code`, `stdout`, `stderr` kept separate, `output` = both, `exception`).
- `make_chairs_folder`: factory `make_chairs_folder(folder, n=10, size=(64, 64))` writing n random
  Flying Chairs triplets 00001.. (random images, random flow) into `folder`; returns it.
- `visible_files(folder)`: the names in a folder; `assert_clean_failure(result, *words, before=,
  folder=)`: exit code 1, one `error: ...` line holding `words`, no traceback, nothing new in `folder`.
- `bn_model`: factory `bn_model(seed=0)`: an eval-mode width-0.25 FlowNetS with BatchNorm whose
  statistics and affine terms are far from identity, and flow heads far from zero.
- `tiny_chairs` (session): a read-only folder of 16 generated 64x96 Flying Chairs triplets (seed 5).
- `make_video`: factory `make_video(path, count=6, size=(64, 96), shifts=None, rate=10, codec="ffv1")`
  writing a clip of `count` frames (frame t = a structured image rolled right by the sum of the first
  t `shifts`, default 2 px a frame) with PyAV (skipped when absent; ffv1 in .mkv/.avi is lossless);
  returns the frames written, (count, H, W, 3) uint8.
- `load_benchmark`: `load_benchmark("sweep")` imports benchmarks/sweep.py as a module, with benchmarks/
  on sys.path (as when it runs as a script) so its sibling imports work.
"""

from __future__ import annotations

import os
import sys

# One thread per test process: the suite runs in two (pytest-xdist), and two processes of two
# OpenMP threads each on 2 cores stall each other; set here, before any test imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The CLI's allocator setting (flowcli.device.keep_freed_memory) lasts for the whole process: the
# test processes keep glibc's default; tests/test_device_memory.py checks it in processes of its own.
os.environ.setdefault("FLOWCLI_KEEP_FREED_MEMORY", "0")
# Results are checked bit for bit (a resumed run against a straight one, seeds), on the CPU: with a
# GPU present, device="auto" would train there. FLOWCLI_TEST_CUDA=1 shows it to the CUDA tests.
if os.environ.get("FLOWCLI_TEST_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

from pathlib import Path

import numpy as np
import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "flyingchairs"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def load_benchmark(monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def _load(name: str):
        spec = importlib.util.spec_from_file_location(f"flowcli_benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return _load


@pytest.fixture
def shared_fixtures() -> Path:
    """The real Flying Chairs pair (00001_img1.ppm, 00001_img2.ppm, 00001_flow.flo); skip if absent."""
    if not (SHARED_FIXTURES / "00001_flow.flo").is_file():
        pytest.skip(f"shared Flying Chairs fixture not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


def structured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 image with smooth gradients, stripes and random blocks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([
        127 + 100 * np.sin(x / 7.0 + rng.uniform(0, 6)) * np.cos(y / 11.0),
        255 * x / max(width - 1, 1),
        255 * y / max(height - 1, 1),
    ], axis=-1)
    blocks = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    image = 0.6 * base + 0.4 * blocks[:height, :width]
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def make_pair(tmp_path):
    """Factory writing two frames, the second the first shifted by (dy, dx); returns their paths."""
    from flowcli.io import write_image

    def _make(height: int = 64, width: int = 80, shift: tuple[int, int] = (2, 3), seed: int = 0,
              folder: Path | None = None, name: str = "a") -> tuple[Path, Path]:
        folder = Path(folder) if folder is not None else tmp_path
        img1 = structured_image(height, width, seed)
        img2 = np.roll(img1, shift, axis=(0, 1))
        path1, path2 = folder / f"{name}_img1.ppm", folder / f"{name}_img2.ppm"
        write_image(path1, img1)
        write_image(path2, img2)
        return path1, path2

    return _make


@pytest.fixture
def make_chairs_folder():
    """Factory writing n random Flying Chairs triplets named 00001.. into a folder."""
    from flowcli.io import write_flo, write_image

    def _make(folder: Path, n: int = 10, size: tuple[int, int] = (64, 64)) -> Path:
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(1, n + 1):
            for kind in ("img1", "img2"):
                write_image(folder / f"{i:05d}_{kind}.ppm", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            write_flo(folder / f"{i:05d}_flow.flo", rng.normal(0, 3, (*size, 2)).astype(np.float32))
        return folder

    return _make


@pytest.fixture
def tiny_pair(make_pair) -> tuple[Path, Path]:
    """Two structured 64x80 .ppm frames in tmp_path (the second moved by 2 px down, 3 px right)."""
    return make_pair()


@pytest.fixture
def run_cli():
    """`run_cli(*args)` -> typer.testing Result of `flowcli <args>` run in-process."""
    from typer.testing import CliRunner

    from flowcli.cli import app

    runner = CliRunner()

    def _run(*args):
        return runner.invoke(app, [str(a) for a in args], prog_name="flowcli")

    return _run


def _visible_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _assert_clean_failure(result, *words: str, before: set[str], folder: Path) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert _visible_files(folder) == before  # no output, no temporary file left behind


@pytest.fixture
def visible_files():
    return _visible_files


@pytest.fixture
def assert_clean_failure():
    return _assert_clean_failure


def _bn_model(seed: int = 0, width: float = 0.25):
    """BatchNorm whose running statistics and affine terms are far from identity (width 0.25 by default)."""
    import torch
    from torch import nn

    from flowcli.model import FlowNetS, ModelConfig

    torch.manual_seed(seed)
    model = FlowNetS(ModelConfig(width=width, batch_norm=True))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.3, 3.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    # larger flow heads than the near-zero init, so differences would show
    for head in (model.predict_flow2, model.predict_flow3):
        nn.init.normal_(head.weight, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """For modules that time or loop much: the test machine's 2 cores are shared, and one thread is
    faster and steadier there. Use with pytestmark = pytest.mark.usefixtures("one_thread")."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bn_model():
    return _bn_model


@pytest.fixture(scope="session")
def tiny_chairs(tmp_path_factory) -> Path:
    from flowcli.data.scenes import SynthConfig
    from flowcli.data.synth import write_dataset

    folder = tmp_path_factory.mktemp("chairs")
    write_dataset(folder, count=16, seed=5, config=SynthConfig(height=64, width=96))
    return folder


@pytest.fixture
def make_video():
    av = pytest.importorskip("av", reason="video tests need PyAV (the 'video' extra)")

    def _make(path: Path, count: int = 6, size: tuple[int, int] = (64, 96), shifts=None, rate: int = 10,
              codec: str = "ffv1") -> np.ndarray:
        shifts = [2] * count if shifts is None else list(shifts)
        base = structured_image(size[0], size[1] + 64, seed=7)
        offsets = np.concatenate([[0], np.cumsum(shifts)])[:count].astype(int)
        frames = np.stack([np.roll(base, int(o), axis=1)[:, :size[1]] for o in offsets])
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = size[1], size[0]
            stream.pix_fmt = {"ffv1": "bgr0", "gif": "rgb8"}.get(codec, "yuv420p")
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        return frames

    return _make


# Files that take tens of seconds (subprocess smoke runs, DDP ranks) start first, so that no long test
# is left for the end while the other worker idles. `--dist worksteal` (pyproject.toml) then lets an
# idle worker take tests from the busy one: fresh clone, 2026-11-30, 170.5 s against 181.8 s with
# `--dist loadfile`, which hands out whole files.
SLOW_FILES_FIRST = ("test_gpu_script.py", "test_gpu_script_phases.py", "test_train_speed_script.py", "test_train.py")


def pytest_collection_modifyitems(items):
    first = {name: rank for rank, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: the rest keeps its order

