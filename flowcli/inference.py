"""The one fast inference path used by predict, eval and bench.

`Predictor` wraps a FlowNetS for eval only: BatchNorm folded into the convolutions, weights in
channels_last and in the requested dtype (real fp16/bf16 weights on CUDA, not autocast), and on
CUDA one captured CUDA graph per input shape (at batch 1 the GPU otherwise waits on kernel
launches: on an H100 fp16 weights + a CUDA graph halved batch-1 latency, autocast made it slower).

CPU measurements (2-core Xeon with AVX-512/AMX, torch 2.13+cpu, 2 threads = physical cores,
random weights, 384x512, batch 1, medians of 12-20 interleaved runs, several repeats):

| network body only                  | width 0.5 | width 1.0 |
|------------------------------------|-----------|-----------|
| eager, contiguous (NCHW)           | 44-46 ms  | 153 ms    |
| eager, channels_last               | 34-35 ms  | 135 ms    |
| channels_last + torch.jit.freeze   | 33-35 ms  | -         |
| torch.compile (inductor, freezing) | 34 ms, after 18 s of compiling | - |

Kept: channels_last on CPU as well (-22 %), the final 4x bilinear upsampling from a contiguous
coarse flow (0.27 ms instead of 1.09 ms from channels_last), scaling by flow_scale at 1/4
resolution. Dropped: jit.freeze (<= 1 ms, costs 0.8 s of tracing plus profiling runs per shape),
oneDNN graph fusion (no gain), changing the thread count (torch's default is the physical cores).
bf16 weights would give 20 ms on this AMX CPU, but differ by ~1 % (not allclose) and
device.resolve_dtype allows them on such CPUs as an opt-in (--dtype bf16), never by default.
Whole Predictor call (run_bench, 384x512, batch 1, random weights, machine otherwise idle):
width 0.5: 39-41 ms median (model.forward in NCHW: 45-49 ms); width 1.0: 149-152 ms (153-161 ms).
That is ~0.2 TFLOP/s, a large share of what two AVX-512 cores do in fp32. When other processes
share the two cores, both threads stall at every OpenMP barrier and a call can take 10x longer.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import threading
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import DeviceError, ImageError
from .guided import guided_filter
from .io import read_image, read_image_pair
from .model import MIN_SIDE, FlowNetS, check_input, pad_to_stride
from .options import TTA_VIEWS, InferenceOptions
from .prefetch import prefetch
from .refine import refine_flow
from .warp import Warper, window_error

WARMUP_BEFORE_CAPTURE = 3  # eager runs on a side stream before a CUDA graph is captured
MAX_CUDA_GRAPHS = 16  # beyond this many input shapes, the cached graphs are dropped and recaptured
# --passes: each extra pass keeps its flow only where the colour error over this window drops.
# Measured on 16 generated test pairs (2 passes): window 7 EPE 3.660, 15 3.664, 31 3.685, no gate 3.705.
PASS_WINDOW = 7


def fold_batchnorm(model: FlowNetS) -> FlowNetS:
    """An eval-mode copy of `model` with every Conv2d+BatchNorm2d pair folded into one conv with bias.

    The copy is a plain FlowNetS whose config says batch_norm=False, so it runs, saves and reloads
    like any other model; its outputs equal the original's eval-mode outputs up to float rounding.
    Models without BatchNorm are copied unchanged. The caller's model is not modified.
    """
    state = dict(model.state_dict())
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                weight, bias = _folded_conv(conv, bn)
                for key in [k for k in state if k.startswith(f"{prefix}.{i + 1}.")]:
                    del state[key]
                state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"] = weight, bias
    config = dataclasses.replace(model.config, batch_norm=False)
    reference = next(model.parameters())
    with torch.device("meta"):  # no random init: it would be overwritten, and would draw from the RNG
        folded = FlowNetS(config)
    folded = folded.to_empty(device=reference.device).to(reference.dtype)
    folded.load_state_dict(state, strict=True)
    originals = dict(model.named_buffers())
    for name, buffer in folded.named_buffers():  # non-persistent buffers (rgb_mean) are not in state
        buffer.copy_(originals[name])
    return folded.eval()


@torch.no_grad()
def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of conv followed by bn (running statistics), computed in float64."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)  # (C_out,)
    conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = beta + (conv_bias - mean) * scale
    dtype = conv.weight.dtype
    return weight.to(dtype), bias.to(dtype)


class _Graph:
    """One captured CUDA graph with its static input and output buffers."""

    def __init__(self, graph, in1: torch.Tensor, in2: torch.Tensor, out: torch.Tensor):
        self.graph, self.in1, self.in2, self.out = graph, in1, in2, out


class Predictor:
    """Fast eval-only FlowNetS.

    `predictor(img1, img2)`: (B, 3, H, W) floats in [0, 1] on any device (under 64 px: upscaled) ->
    (B, 2, H, W) float32 flow in pixels on `device`. Works on a BN-folded copy; the given model is
    left as it was. channels_last=None means on (it measured faster on CPU as well as on CUDA).
    On CUDA with cuda_graphs, the first call of each (B, H, W) warms up and captures a graph; later
    calls copy into its static inputs and replay it. compile=True applies torch.compile to the
    network body at the first call; a missing compiler toolchain raises DeviceError.
    What runs around the network is `options` (flowcli.options.InferenceOptions), with keyword
    overrides: Predictor(model, device="cpu", passes=2) is InferenceOptions(passes=2).
    tta="hflip" or "hvflip" averages the flow with that of the mirrored pair(s) (TTA_VIEWS): more
    accurate, at 2x or 3x the work. passes=N runs the network N times: each extra pass predicts the
    motion left between image 1 and image 2 warped by the flow so far (large motions shrink to
    what the network handles well). refine=N (default 1) applies N Lucas-Kanade steps on the pair
    (flowcli.refine), mostly gaining sub-pixel accuracy: the first at half resolution, before the
    smoothing, the others at full resolution after it. smooth=True (the default) smooths the flow
    along image 1's edges (flowcli.guided). refine=0 with smooth=False gives the network's bilinearly
    upsampled flow, as in the FlowNet paper.
    """

    def __init__(self, model: FlowNetS, *, device: torch.device | str, dtype: torch.dtype = torch.float32,
                 channels_last: bool | None = None, compile: bool = False, cuda_graphs: bool = True,
                 options: InferenceOptions | None = None, **overrides):
        self.device = torch.device(device)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        self.options = dataclasses.replace(options or InferenceOptions(), **overrides)
        self.dtype = dtype
        self.is_cuda = self.device.type == "cuda"
        self.channels_last = True if channels_last is None else bool(channels_last)
        self.cuda_graphs = bool(cuda_graphs) and self.is_cuda
        self.compile = bool(compile)
        if self.compile:
            _check_compile_toolchain(self.device)
        self.config = model.config
        net = fold_batchnorm(model).to(device=self.device, dtype=dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.model = net.requires_grad_(False)
        self._mean = net.rgb_mean.to(dtype).view(1, 6, 1, 1)
        self._compiled = None
        self._graphs: dict[tuple[int, int, int], _Graph] = {}
        self._pool = None
        if self.is_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes per graph: pick the fastest kernels once

    # -- the computation -------------------------------------------------------------------------
    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """Padded, mean-subtracted (B, 6, H, W) -> flow2 (B, 2, H/4, W/4) in units of flow/flow_scale."""
        if not self.compile:
            return self.model.pyramid(x)[0]
        if self._compiled is None:
            self._compiled = torch.compile(self.model.pyramid, dynamic=False)
        try:
            return self._compiled(x)[0]
        except Exception as exc:
            if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")) and not _is_out_of_memory(exc):
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise DeviceError(f"--compile failed ({type(exc).__name__}: {first}); run without --compile") from None
            raise

    def _forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) on the predictor's device and dtype -> (B, 2, H, W) float32 flow in pixels."""
        options = self.options
        flow = self._mirror_averaged(img1, img2, TTA_VIEWS[options.tta])
        if options.passes > 1:
            flow = self._repredicted(img1, img2, flow)
        if options.refine:  # the first step at half resolution, before the filter: flowcli.refine says why
            flow = refine_flow(img1, img2, flow, iterations=1, scale=2)
        if options.smooth:
            flow = guided_filter(img1, flow)
        return refine_flow(img1, img2, flow, iterations=max(options.refine - 1, 0))

    def _repredicted(self, img1: torch.Tensor, img2: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """passes - 1 more network passes on (image 1, image 2 warped by the flow so far).

        The residual r maps image 1 onto the warped image 2, so the composed flow is
        r(p) + flow(p + r(p)) (measured: EPE 3.705 against 3.741 for flow + r). A pixel keeps the
        new flow only where it lowers the window's colour error (PASS_WINDOW): the warped image has
        ghosts where the flow so far is wrong or occluded, and the network was not trained on them.
        Without --tta, every second pass runs on the left-right mirrored pair: its errors differ from
        the plain pass's, so the gate has a real alternative (16 generated pairs, EPE after 2 passes
        3.612 against 3.660 with plain passes only, after 3 passes 3.593 against 3.650; same cost).
        Picking per pixel leaves speckle, which the smoothing that follows removes (flowcli.guided:
        3.612 -> 3.336 after 2 passes).
        """
        warp, reference = Warper(*flow.shape[-2:], flow.device), img1.float()
        warped = warp(img2, flow)
        error = window_error(reference, warped, PASS_WINDOW)
        tta = self.options.tta
        for extra in range(1, self.options.passes):
            views = TTA_VIEWS[tta] if tta != "none" else ((-1,) if extra % 2 else (0,))
            residual = self._mirror_averaged(img1, warped.to(img1.dtype), views)
            candidate = residual + warp(flow, residual)
            warped_candidate = warp(img2, candidate)
            candidate_error = window_error(reference, warped_candidate, PASS_WINDOW)
            better = candidate_error < error
            flow = torch.where(better[:, None], candidate, flow)
            warped = torch.where(better[:, None], warped_candidate, warped)
            error = torch.where(better, candidate_error, error)
        return flow

    def _mirror_averaged(self, img1: torch.Tensor, img2: torch.Tensor, views: tuple[int, ...]) -> torch.Tensor:
        """The network's flow averaged over views of the pair (TTA_VIEWS' codes), one batch for all."""
        if views == (0,):
            return self._flow(img1, img2)
        flows = self._flow(torch.cat([_mirror(img1, d) for d in views]),
                           torch.cat([_mirror(img2, d) for d in views])).chunk(len(views))
        total = torch.zeros_like(flows[0])
        for d, flow in zip(views, flows):
            flow = _mirror(flow, d)
            if d:
                flow[:, 0 if d == -1 else 1].neg_()  # mirroring along x negates u; along y, v
            total += flow
        return total / len(views)

    def _flow(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        height, width = img1.shape[-2:]
        x, (top, left) = pad_to_stride(torch.cat((img1, img2), 1).sub_(self._mean))  # (B, 6, H64, W64)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        flow2 = self._body(x).float().contiguous()  # NCHW: bilinear is 4x faster than on channels_last
        flow2 = flow2 * self.config.flow_scale  # scale at 1/4 resolution; bilinear is linear
        flow = F.interpolate(flow2, scale_factor=4, mode="bilinear", align_corners=False)
        return flow[:, :, top:top + height, left:left + width]

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        if img1.ndim == 4 and img1.shape == img2.shape and 0 < min(img1.shape[-2:]) < MIN_SIDE:
            return self._upscaled(img1, img2)
        check_input(img1, img2)
        batch, height, width = img1.shape[0], *img1.shape[-2:]
        try:
            with torch.inference_mode():
                if self.cuda_graphs:
                    return self._replay((batch, height, width), img1, img2)
                a = img1.to(self.device, self.dtype, non_blocking=True)
                b = img2.to(self.device, self.dtype, non_blocking=True)
                return self._forward(a, b).contiguous()
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not _is_out_of_memory(exc):
                raise
        # out of memory: outside the except block the traceback's tensors are gone and can be freed
        raise self._does_not_fit(batch, height, width)

    def _upscaled(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """Frames under the network's 64 px: upsample by the smallest integer factor that reaches it
        (bilinear), predict, resize the flow back (for a factor of 2, the mean of each 2x2 block) and
        divide it by the factor. The real 50x50 Flying Chairs pair goes through here."""
        height, width = img1.shape[-2:]
        factor = math.ceil(MIN_SIDE / min(height, width))
        big1, big2 = (F.interpolate(x.float(), scale_factor=factor, mode="bilinear", align_corners=False)
                      for x in (img1, img2))
        flow = self(big1, big2)
        return F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False) / factor

    def _does_not_fit(self, batch: int, height: int, width: int) -> DeviceError:
        self.release()
        where = "GPU memory" if self.is_cuda else "memory"
        return DeviceError(f"input {height}x{width} does not fit in {where} at batch {batch}; "
                           "try --max-side N or a smaller --batch-size")

    def release(self) -> None:
        """Drop captured CUDA graphs and return cached GPU memory."""
        self._graphs.clear()
        self._pool = None
        if self.is_cuda:
            torch.cuda.empty_cache()

    # -- CUDA graphs ------------------------------------------------------------------------------
    def _replay(self, key: tuple[int, int, int], img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        entry = self._graphs.get(key) or self._capture(key, img1, img2)
        entry.in1.copy_(img1, non_blocking=True)
        entry.in2.copy_(img2, non_blocking=True)
        entry.graph.replay()
        # The static output is overwritten by the next replay (of any graph: they share one pool),
        # so hand out a copy; it is queued on the same stream right after the replay.
        return entry.out.clone()

    def _capture(self, key: tuple[int, int, int], img1: torch.Tensor, img2: torch.Tensor) -> _Graph:
        if len(self._graphs) >= MAX_CUDA_GRAPHS:
            self.release()
        batch, height, width = key
        in1 = torch.empty((batch, 3, height, width), device=self.device, dtype=self.dtype)
        in2 = torch.empty_like(in1)
        in1.copy_(img1)
        in2.copy_(img2)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up: cuDNN autotuning, allocator, lazy compile
            for _ in range(WARMUP_BEFORE_CAPTURE):
                self._forward(in1, in2)
        torch.cuda.current_stream(self.device).wait_stream(side)
        # The graph's pool cannot reuse blocks cached by the warm-up: hand them back first (once per shape).
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: decoding threads (predict_many) may run while this thread captures
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out = self._forward(in1, in2)
        except RuntimeError as exc:  # an OOM inside a capture can surface as a capture error
            if _is_out_of_memory(exc):
                raise torch.cuda.OutOfMemoryError(str(exc).splitlines()[0] if str(exc) else "out of memory") from None
            raise
        entry = _Graph(graph, in1, in2, out)
        self._graphs[key] = entry
        return entry

    # -- numpy in, numpy out ---------------------------------------------------------------------
    def predict_uint8(self, img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 batches -> (B, H, W, 2) float32 flow; pinned, async copies on CUDA."""
        tensors = []
        try:
            for img in (img1, img2):
                t = torch.from_numpy(np.ascontiguousarray(img))
                if self.is_cuda:
                    t = t.pin_memory()
                t = t.to(self.device, non_blocking=True).permute(0, 3, 1, 2)  # (B, 3, H, W) view
                tensors.append(t.to(self.dtype).div_(255.0))
        except RuntimeError as exc:
            if not _is_out_of_memory(exc):
                raise
            tensors = None
        if tensors is None:
            raise self._does_not_fit(img1.shape[0], *img1.shape[1:3])
        flow = self(*tensors)  # (B, 2, H, W)
        return flow.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def predict_numpy(self, img1: np.ndarray, img2: np.ndarray, *, max_side: int | None = None) -> np.ndarray:
        """(H, W, 3) uint8 frames -> (H, W, 2) float32 flow in pixels.

        `max_side`: frames whose longer side exceeds it are shrunk for the network and the flow is
        resized back (vectors scaled) to the input size.
        """
        for name, img in (("image 1", img1), ("image 2", img2)):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ImageError(f"{name}: expected an HxWx3 uint8 image, got {tuple(img.shape)} {img.dtype}")
        if img1.shape != img2.shape:
            raise ImageError(f"frames differ in size: {img1.shape[1]}x{img1.shape[0]} vs {img2.shape[1]}x{img2.shape[0]}")
        height, width = img1.shape[:2]
        if max_side is not None:
            img1, img2, _ = resize_for_max_side(img1, img2, max_side)
        flow = self.predict_uint8(img1[None], img2[None])[0]
        return resize_flow(flow, height, width)


def _mirror(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x mirrored along dim (-1: left-right, -2: up-down); dim 0 leaves it as it is."""
    return x.flip(dim) if dim else x


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM (also when it surfaces as a failed graph capture) or the CPU allocator's failure."""
    seen = 0
    while exc is not None and seen < 4:
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(exc):
            return True
        if "out of memory" in str(exc).lower():
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _check_compile_toolchain(device: torch.device) -> None:
    """Fail early, in one line, when torch.compile cannot work here."""
    try:
        import torch._dynamo
    except Exception as exc:  # broken or absent in some builds
        raise DeviceError(f"--compile: torch.compile is unavailable ({type(exc).__name__})") from None
    if not torch._dynamo.is_dynamo_supported():
        raise DeviceError("--compile: torch.compile is not supported with this Python/torch; run without --compile")
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise DeviceError("--compile on CUDA needs Triton (pip install triton); run without --compile")
    elif not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        raise DeviceError("--compile on CPU needs a C++ compiler (g++ or clang++); run without --compile")


def load_predictor(weights=None, *, device: str = "cpu", dtype: str = "fp32",
                   options: InferenceOptions | None = None, **overrides) -> "Predictor":
    """The shared fast inference path (BN folded, channels-last, CUDA graphs where available);
    `options` and keyword overrides as for Predictor."""
    from .checkpoint import load_model
    from .device import resolve_device, resolve_dtype

    torch_device = resolve_device(device)
    return Predictor(load_model(weights, device=torch_device), device=torch_device,
                     dtype=resolve_dtype(dtype, torch_device), options=options, **overrides)


# -- --max-side ----------------------------------------------------------------------------------
def resize_for_max_side(img1: np.ndarray, img2: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Shrink two (H, W, 3) uint8 frames so that the longer side is at most `max_side`.

    Returns (img1, img2, scale) with scale = new longer side / old (1.0 and the frames themselves
    when they already fit). Aspect ratio is kept, but no side goes below 64 px. Undo on the flow
    with `resize_flow(flow, H, W)`.
    """
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
    height, width = img1.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return img1, img2, 1.0
    size = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    return _resize_image(img1, size), _resize_image(img2, size), scale


def _resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (h, w, 2) flow to (height, width, 2), scaling u by width/w and v by height/h."""
    h, w = flow.shape[:2]
    if (h, w) == (height, width):
        return flow
    x = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0]
    x[0] *= width / w
    x[1] *= height / h
    return x.permute(1, 2, 0).contiguous().numpy()


# -- many pairs ----------------------------------------------------------------------------------
def iterate_predictions(predictor: Predictor, pairs: Sequence[tuple[Path, Path]], *, batch_size: int = 1,
                        max_side: int | None = None, workers: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, (H, W, 2) flow) for every pair, in order.

    `workers` background threads decode upcoming pairs (flowcli.io.read_image_pair, plus the
    --max-side resize) while the network runs; an image that several pairs share (video frames)
    is decoded once. Consecutive pairs of one size are stacked into batches of up to `batch_size`.
    An unreadable pair raises its ImageError when its turn comes.
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be >= 1, got {batch_size} and {workers}")
    pairs = list(pairs)
    decodes = _SharedDecodes(pairs)

    def load(index: int):
        img1, img2 = read_image_pair(*pairs[index], read=decodes.read)
        size = img1.shape[:2]
        if max_side is not None:
            img1, img2, _ = resize_for_max_side(img1, img2, max_side)
        return index, img1, img2, size

    batch: list[tuple] = []
    for future in prefetch(load, len(pairs), depth=2 * batch_size + workers, workers=workers,
                           name="flowcli-decode"):
        item = future.result()
        if batch and item[1].shape != batch[0][1].shape:
            yield from _run_batch(predictor, batch)
            batch = []
        batch.append(item)
        if len(batch) == batch_size:
            yield from _run_batch(predictor, batch)
            batch = []
    if batch:
        yield from _run_batch(predictor, batch)


class _SharedDecodes:
    """read_image for pairs that share images (a video's frames: each is the second image of one
    pair and the first of the next): a path is decoded once, by the first thread that asks for it,
    and forgotten after its last use. A 512x384 PNG takes ~8 ms to decode on this CPU; decoding
    each frame twice cost ~15 % of `predict --sequence`'s throughput on 2 cores."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]]):
        self._uses = Counter(path for pair in pairs for path in pair)
        self._decoded: dict[Path, Future] = {}
        self._lock = threading.Lock()

    def read(self, path: Path) -> np.ndarray:
        with self._lock:
            future = self._decoded.get(path)
            first = future is None
            if first:
                future = self._decoded[path] = Future()
            self._uses[path] -= 1
            if self._uses[path] <= 0:
                self._decoded.pop(path, None)
        if first:
            try:
                future.set_result(read_image(path))
            except BaseException as exc:  # the other pair that uses the image gets the same error
                future.set_exception(exc)
        return future.result()


def _run_batch(predictor: Predictor, batch: list[tuple]) -> Iterator[tuple[int, np.ndarray]]:
    img1 = np.stack([item[1] for item in batch])  # (B, H, W, 3)
    img2 = np.stack([item[2] for item in batch])
    flows = predictor.predict_uint8(img1, img2)  # (B, H, W, 2)
    for (index, _, _, (height, width)), flow in zip(batch, flows):
        yield index, resize_flow(flow, height, width)


def predict_many(predictor: Predictor, pairs: Sequence[tuple[Path, Path]], *,
                 on_result: Callable[[int, np.ndarray], None], batch_size: int = 1,
                 max_side: int | None = None, workers: int = 2) -> int:
    """Predict every (image1, image2) path pair, calling on_result(index, flow) in order.

    Decoding overlaps compute (see `iterate_predictions`). Returns the number of pairs done.
    """
    done = 0
    for index, flow in iterate_predictions(predictor, pairs, batch_size=batch_size,
                                           max_side=max_side, workers=workers):
        on_result(index, flow)
        done += 1
    return done
