"""The inference engine (Predictor): equals the plain model, runs the pipeline's options, small frames,
out-of-memory and compile errors, CUDA graph bookkeeping."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from flowcli.errors import DeviceError, FlowcliError, ImageError, OutOfMemoryError
from flowcli.inference.engine import Predictor
from flowcli.inference.options import InferenceOptions


def frames(batch: int, height: int, width: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator),
            torch.rand(batch, 3, height, width, generator=generator))


@pytest.mark.parametrize("channels_last", [False, True])
def test_predictor_matches_the_plain_model_on_cpu(channels_last, bn_model):
    model = bn_model()
    img1, img2 = frames(2, 70, 100)
    with torch.no_grad():
        expected = model(img1, img2)
    predictor = Predictor(model, device=torch.device("cpu"), channels_last=channels_last, smooth=False, refine=0)
    got = predictor(img1.double(), img2.double())  # other dtypes are converted
    assert got.shape == (2, 2, 70, 100) and got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def mirrored(flow: torch.Tensor, dim: int) -> torch.Tensor:
    """The flow of the mirrored pair: mirror the field, negate the component along the mirror axis."""
    out = flow.flip(dim)
    out[:, 0 if dim == -1 else 1] *= -1
    return out


@pytest.mark.parametrize("tta, flips", [("hflip", (-1,)), ("hvflip", (-1, -2))])
def test_tta_averages_the_unmirrored_flows_of_the_mirrored_pairs(tta, flips, bn_model):
    img1, img2 = frames(2, 70, 100)
    plain = Predictor(bn_model(), device="cpu", refine=0)  # the smoothing is linear in the flow; refining is not
    views = [plain(img1, img2)] + [mirrored(plain(img1.flip(d), img2.flip(d)), d) for d in flips]
    got = Predictor(bn_model(), device="cpu", tta=tta, refine=0)(img1, img2)
    assert got.shape == (2, 2, 70, 100)
    assert (views[1] - views[0]).abs().mean() > 0.01  # an untrained net is not mirror-symmetric
    torch.testing.assert_close(got, sum(views) / len(views), atol=1e-4, rtol=1e-4)


def test_tta_hflip_makes_the_prediction_mirror_equivariant(bn_model):
    img1, img2 = frames(1, 64, 128)
    predictor = Predictor(bn_model(), device="cpu", tta="hflip")
    flow = predictor(img1, img2)
    torch.testing.assert_close(mirrored(predictor(img1.flip(-1), img2.flip(-1)), -1), flow, atol=1e-4, rtol=1e-4)
    with pytest.raises(FlowcliError, match="tta='sideways': choose one of none, hflip, hvflip"):
        Predictor(bn_model(), device="cpu", tta="sideways")


def test_smoothing_is_the_guided_filter_of_the_network_flow_and_is_on_by_default(bn_model):
    from flowcli.inference.guided import guided_filter

    img1, img2 = frames(2, 64, 96)
    raw = Predictor(bn_model(), device="cpu", smooth=False, refine=0)(img1, img2)
    got = Predictor(bn_model(), device="cpu", refine=0)(img1, img2)
    torch.testing.assert_close(got, guided_filter(img1, raw), atol=1e-4, rtol=1e-4)
    assert (got - raw).abs().max() > 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (FLOWCLI_TEST_CUDA=1 shows a GPU to the tests)")
def test_cuda_graphs_capture_every_inference_option(bn_model):
    """Passes, mirrored views, the guided filter and refinement all run inside one captured graph."""
    img1, img2 = frames(2, 70, 100)
    options = dict(tta="hflip", passes=2, refine=2)  # refine 2: a half- and a full-resolution step
    eager = Predictor(bn_model(), device="cuda", cuda_graphs=False, **options)(img1, img2)
    graphed = Predictor(bn_model(), device="cuda", **options)
    for _ in range(2):  # capture, then replay
        torch.testing.assert_close(graphed(img1, img2), eager, atol=1e-3, rtol=1e-3)


def test_refine_steps_half_resolution_before_the_smoothing_full_after_and_one_by_default(bn_model):
    from flowcli.inference.guided import guided_filter
    from flowcli.inference.refine import refine_flow

    img1, img2 = frames(1, 64, 96)
    raw = Predictor(bn_model(), device="cpu", smooth=False, refine=0)(img1, img2)
    half = refine_flow(img1, img2, raw, iterations=1, scale=2)
    default, two = (Predictor(bn_model(), device="cpu", **options)(img1, img2) for options in ({}, {"refine": 2}))
    torch.testing.assert_close(default, guided_filter(img1, half), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(two, refine_flow(img1, img2, default, iterations=1), atol=1e-4, rtol=1e-4)
    assert (half - raw).abs().max() > 0.01 and (two - default).abs().max() > 0.01
    with pytest.raises(FlowcliError, match="refine=-1"):
        Predictor(bn_model(), device="cpu", refine=-1)


class StepPredictor(Predictor):
    """A stand-in network: it finds which way image 2 is shifted along x (whole pixels, brute force) and
    always answers 2 px that way; 2 px to the right when it finds no shift. It sees mirrored views
    as mirrored (a leftward shift), like the real network. `seen` records the shifts it found."""

    seen: list[int]

    def _flow(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        inner = (..., slice(8, -8), slice(8, -8))
        costs = {s: (img2.roll(-s, -1) - img1)[inner].abs().mean().item() for s in range(-6, 7)}
        shift = min(costs, key=costs.get)
        self.seen.append(shift)
        flow = torch.zeros(img1.shape[0], 2, *img1.shape[-2:])
        flow[:, 0] = -2.0 if shift < 0 else 2.0
        return flow


def test_extra_passes_compose_the_residual_and_keep_it_only_where_the_colours_match_better(bn_model):
    img1 = frames(1, 64, 96)[0]
    img2 = img1.roll(4, dims=-1)  # img2(x + 4) = img1(x): the true flow is (4, 0)
    # away from the borders: at the right one image 2 wraps around, and the smoothing after the
    # passes (flowcli.guided) carries that up to ~20 px inwards
    inner = (slice(None), slice(None), slice(10, -10), slice(10, 60))
    predictors = [StepPredictor(bn_model(), device="cpu", passes=n, refine=0) for n in (1, 2, 3)]
    for predictor in predictors:
        predictor.seen = []
    one, two, three = (predictor(img1, img2)[inner] for predictor in predictors)
    assert predictors[2].seen == [4, -2, 0]  # the pair, the mirrored warped pair, the warped pair
    expected = torch.zeros_like(one)
    assert torch.equal(one, expected.index_fill(1, torch.tensor([0]), 2.0))
    # pass 2 runs on the mirrored pair (image 2 moved back by 2 px: a 2 px shift to the left there),
    # answers 2 px, mirrored back to the right: composed 2 + 2 = 4 px, the true flow
    torch.testing.assert_close(two, expected.index_fill(1, torch.tensor([0]), 4.0), atol=1e-4, rtol=0)
    # pass 3 (plain pair, nothing left to find) answers 2 px: 6 px would match worse, the gate keeps 4
    torch.testing.assert_close(three, two)
    with pytest.raises(FlowcliError, match="passes=0: the network runs at least once"):
        Predictor(bn_model(), device="cpu", passes=0)


def test_options_come_as_an_object_with_keyword_overrides(bn_model):
    predictor = Predictor(bn_model(), device="cpu", options=InferenceOptions(passes=2, tta="hflip"), refine=0)
    assert predictor.options == InferenceOptions(tta="hflip", passes=2, refine=0)
    assert Predictor(bn_model(), device="cpu").options == InferenceOptions()
    with pytest.raises(TypeError, match="sharpen"):
        Predictor(bn_model(), device="cpu", sharpen=True)


def test_predictor_rejects_bad_frames(bn_model):
    predictor = Predictor(bn_model(), device="cpu")
    with pytest.raises(ValueError, match=r"at least 64x64, got 0x80 \(HxW\)"):
        predictor(*frames(1, 0, 80))
    with pytest.raises(ValueError, match=r"\(1, 4, 64, 64\)"):
        predictor(torch.rand(1, 4, 64, 64), torch.rand(1, 4, 64, 64))


def test_frames_under_64_px_are_upscaled_by_an_integer_factor_and_the_flow_scaled_back(bn_model):
    predictor = Predictor(bn_model(), device="cpu")
    img1, img2 = frames(2, 25, 70)  # factor ceil(64 / 25) = 3 -> 75x210
    big = [torch.nn.functional.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)
           for x in (img1, img2)]
    expected = torch.nn.functional.interpolate(predictor(*big), size=(25, 70), mode="bilinear",
                                               align_corners=False) / 3
    got = predictor(img1, img2)
    assert got.shape == (2, 2, 25, 70) and expected.abs().max() > 0.01
    torch.testing.assert_close(got, expected)


def test_out_of_memory_becomes_a_device_error(monkeypatch, bn_model):
    predictor = Predictor(bn_model(), device="cpu")

    def fail(*_):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(predictor, "_forward", fail)
    with pytest.raises(OutOfMemoryError, match=r"input 64x96 does not fit in memory at batch 3; "
                                               r"try smaller frames or a smaller batch$"):
        predictor(*frames(3, 64, 96))
    with pytest.raises(OutOfMemoryError, match=r"at batch 1; try smaller frames$"):  # no batch to shrink
        predictor(*frames(1, 64, 96))


def test_compile_without_a_toolchain_is_a_device_error(monkeypatch, bn_model):
    monkeypatch.setattr("flowcli.device.shutil.which", lambda _: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(DeviceError, match="C\\+\\+ compiler"):
        Predictor(bn_model(), device="cpu", compile=True)


def test_predict_numpy_and_max_side(bn_model):
    predictor = Predictor(bn_model(), device="cpu", smooth=False, refine=0)
    rng = np.random.default_rng(0)
    img1 = rng.integers(0, 256, (80, 150, 3), dtype=np.uint8)
    img2 = rng.integers(0, 256, (80, 150, 3), dtype=np.uint8)
    flow = predictor.predict_numpy(img1, img2)
    assert flow.shape == (80, 150, 2) and flow.dtype == np.float32 and flow.flags.c_contiguous
    with torch.no_grad():
        expected = bn_model()(*(torch.from_numpy(i).permute(2, 0, 1)[None].float() / 255 for i in (img1, img2)))
    np.testing.assert_allclose(flow, expected[0].permute(1, 2, 0).numpy(), atol=1e-4, rtol=1e-4)
    small = predictor.predict_numpy(img1, img2, max_side=100)
    assert small.shape == (80, 150, 2) and np.abs(small - flow).max() > 1e-2  # computed small, sized back
    with pytest.raises(ImageError, match="image 1 is 80x150 but image 2 is 70x150"):
        predictor.predict_numpy(img1, img2[:70])


def test_graph_bookkeeping_with_a_simulated_cuda(monkeypatch, bn_model):
    """The capture/replay logic (static buffers, one graph per shape, output copies) on CPU: the
    torch.cuda calls are replaced by stand-ins whose replay recomputes from the static inputs."""
    predictor = Predictor(bn_model(), device="cpu", smooth=False, refine=0)
    predictor.cuda_graphs = True
    stream = SimpleNamespace(wait_stream=lambda other: None)

    class FakeGraph:
        def replay(self):
            entry = next(e for e in predictor._graphs.values() if e.graph is self)
            entry.out.copy_(predictor._forward(entry.in1, entry.in2))

    for name, value in {"CUDAGraph": FakeGraph, "graph": lambda *a, **k: nullcontext(),
                        "Stream": lambda *a: stream, "current_stream": lambda *a: stream,
                        "stream": lambda s: nullcontext(), "synchronize": lambda *a: None,
                        "empty_cache": lambda: None, "graph_pool_handle": lambda: object()}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    first, second = frames(2, 70, 100, seed=1), frames(2, 70, 100, seed=2)
    with torch.no_grad():
        want_first, want_second = bn_model()(*first), bn_model()(*second)
    got_first = predictor(*first)
    got_second = predictor(*second)  # replays the same graph with new inputs
    torch.testing.assert_close(got_first, want_first, atol=1e-4, rtol=1e-4)  # not overwritten
    torch.testing.assert_close(got_second, want_second, atol=1e-4, rtol=1e-4)
    predictor(*frames(1, 64, 64))
    assert sorted(predictor._graphs) == [(1, 64, 64), (2, 70, 100)]
    predictor.release()
    assert not predictor._graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (FLOWCLI_TEST_CUDA=1 shows a GPU to the tests)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_graphs_match_eager(dtype, bn_model):
    model = bn_model()
    img1, img2 = frames(2, 70, 100)
    with torch.no_grad():
        expected = model(img1, img2)
    predictor = Predictor(model, device="cuda", dtype=dtype, smooth=False, refine=0)
    tolerance = 1e-3 if dtype == torch.float32 else 3e-2
    for scale in (1.0, 0.5):  # a second replay must see the new inputs
        got = predictor(img1 * scale, img2 * scale)
        with torch.no_grad():
            want = expected if scale == 1.0 else model(img1 * scale, img2 * scale)
        assert got.dtype == torch.float32 and got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, atol=tolerance, rtol=tolerance)
    assert len(predictor._graphs) == 1

