"""The generator's per-pixel kernels through torch.compile: the same scenes as eager up to float
rounding; without a C++ compiler, one line before any work."""

from __future__ import annotations

import shutil

import pytest
import torch

from flowcli.data.synth import SceneGenerator, SynthConfig
from flowcli.errors import DeviceError


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_kernels_render_the_eager_scenes():
    for motion, seed in (("chairs", 3), ("wide", 4)):  # wide: homographies, the kernels' other branch
        config = SynthConfig(height=64, width=96).with_motion(motion)
        eager = SceneGenerator(config, seed=seed).render(3)
        fused = SceneGenerator(config, seed=seed, compile=True).render(3)
        assert torch.equal(fused.layers1, eager.layers1) and torch.equal(fused.layers2, eager.layers2)
        torch.testing.assert_close(fused.flow, eager.flow, rtol=0, atol=1e-4)
        for a, b in ((fused.img1, eager.img1), (fused.img2, eager.img2)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        assert eager.layers1.unique().numel() > 2 and eager.flow.abs().max() > 1  # scenes worth comparing


def test_compiling_without_a_cpp_compiler_is_one_line(monkeypatch, run_cli, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(DeviceError, match=r"^compile=True: torch.compile needs a C\+\+ compiler on a CPU and "
                                          r"no-such-compiler was not found"):
        SceneGenerator(SynthConfig(height=64, width=96), compile=True)
    result = run_cli("synth", "--bench", "--compile", "--device", "cpu")
    assert result.exit_code == 1 and result.stderr.startswith("error: --compile: torch.compile needs")
    result = run_cli("train", "--compile", "--device", "cpu", "-o", tmp_path / "run")
    assert result.exit_code == 1 and "--compile: torch.compile needs a C++ compiler" in result.stderr
    assert not (tmp_path / "run").exists()


def test_training_with_compile_renders_with_the_compiled_kernels():
    from flowcli.data import render
    from flowcli.training.config import TrainConfig
    from flowcli.training.sources import SynthSource

    config = TrainConfig(batch_size=2, crop=(64, 64), synth_size=(64, 96), val_count=1, synth_motion="mixed")
    cpu = torch.device("cpu")
    for compile, expected in ((False, render.EAGER), (True, render.kernels(True, cpu))):
        source = SynthSource(config.with_overrides(compile=compile), device=cpu)
        assert [g._kernels for g in source.generators] == [expected] * 2
    assert render.kernels(True, cpu) is not render.EAGER
