"""The generator's per-pixel kernels through torch.compile: the same scenes as eager up to float
rounding; without a C++ compiler, one line before any work."""

from __future__ import annotations

import pytest
import torch

from flowcli.data import render
from flowcli.data.scenes import SynthConfig
from flowcli.data.synth import SceneGenerator
from flowcli.device import check_compile_toolchain
from flowcli.errors import DeviceError

CPU = torch.device("cpu")


def toolchain_missing() -> str:
    try:
        check_compile_toolchain(CPU)
    except DeviceError as error:
        return str(error)
    return ""


needs_toolchain = pytest.mark.skipif(bool(toolchain_missing()), reason=toolchain_missing() or "-")


@pytest.fixture(autouse=True, scope="module")
def fresh_kernels():
    """Compiled kernels are cached per process: another test's stand-in for torch.compile must not
    leave its functions here, nor these tests theirs elsewhere. Within this module they share one
    compilation (each compiles for seconds)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "_compiled", [])
        yield


@needs_toolchain
def test_compiled_kernels_render_the_eager_scenes():
    for motion, seed in (("chairs", 3), ("wide", 4)):  # wide: homographies, the kernels' other branch
        config = SynthConfig(height=64, width=96).with_motion(motion)
        eager = SceneGenerator(config, seed=seed).render(3)
        fused = SceneGenerator(config, seed=seed, compile=True).render(3)
        assert render._compiled and fused.img1.data_ptr() != eager.img1.data_ptr()
        assert_same_scenes(fused, eager)


def assert_same_scenes(fused, eager):
    assert eager.layers1.unique().numel() > 2 and eager.flow.abs().max() > 1  # scenes worth comparing
    # A mask sample rounded across its 0.5 threshold may give one pixel another layer; no more.
    same = (fused.layers1 == eager.layers1) & (fused.layers2 == eager.layers2)
    assert same.float().mean() > 0.999
    for a, b in ((fused.img1, eager.img1), (fused.img2, eager.img2), (fused.flow, eager.flow)):
        torch.testing.assert_close(a.movedim(1, -1)[same], b.movedim(1, -1)[same], rtol=0, atol=1e-5)


@needs_toolchain
def test_compiled_kernels_write_chunks_of_part_of_a_view_in_place():
    # 64x96 views are smaller than a CPU chunk (whole views per block); 1000-pixel chunks are parts of one
    config = SynthConfig(height=64, width=96)
    eager, fused = SceneGenerator(config, seed=5), SceneGenerator(config, seed=5, compile=True)
    for generator in (eager, fused):
        generator._chunk = 1000
        generator._pixels = generator._pixel_blocks()
    assert_same_scenes(fused.render(2), eager.render(2))


def test_compiling_without_a_cpp_compiler_is_one_line(monkeypatch, run_cli, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(DeviceError, match=r"^compile=True on CPU builds C\+\+ with \$CXX, and no-such-compiler "
                                          r"was not found"):
        SceneGenerator(SynthConfig(height=64, width=96), compile=True)
    result = run_cli("synth", "--bench", "--compile", "--device", "cpu")
    assert result.exit_code == 1 and result.stderr.startswith("error: --compile on CPU builds C++ with $CXX")
    result = run_cli("train", "--compile", "--device", "cpu", "-o", tmp_path / "run")
    assert result.exit_code == 1 and "--compile on CPU builds C++ with $CXX" in result.stderr
    assert not (tmp_path / "run").exists()


@needs_toolchain
def test_training_with_compile_renders_with_the_compiled_kernels():
    from flowcli.training.config import TrainConfig
    from flowcli.training.sources import SynthSource

    config = TrainConfig(batch_size=2, crop=(64, 64), synth_size=(64, 96), val_count=1, synth_motion="mixed")
    for compile in (False, True):
        source = SynthSource(config.with_overrides(compile=compile), device=CPU)
        expected = render.kernels(True, CPU) if compile else render.EAGER
        assert [g._kernels for g in source.generators] == [expected] * 2
    assert render.kernels(True, CPU) is not render.EAGER
