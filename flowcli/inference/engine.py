"""The inference engine: runs the pipeline (flowcli.inference.pipeline) on a BN-folded FlowNetS as
fast as the device allows: weights in channels_last and in the requested dtype (real fp16/bf16
weights on CUDA, not autocast), one captured CUDA graph per input shape on CUDA, optional
torch.compile, frames under 64 px upscaled, out-of-memory turned into one clear error.
Why these choices (speed measurements): benchmarks/README.md, "Inference engine".
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch

from ..device import check_compile_toolchain
from ..errors import DeviceError, OutOfMemoryError
from ..io import check_frame_pair
from ..model import MIN_SIDE, FlowNetS, check_input, pad_to_stride, upscaled_for_network
from .fold import fold_batchnorm
from .options import InferenceOptions
from .pipeline import averaged_over_views, build_pipeline, run_pipeline
from .resize import resize_flow, resize_for_max_side

WARMUP_BEFORE_CAPTURE = 3  # eager runs on a side stream before a CUDA graph is captured
MAX_CUDA_GRAPHS = 16  # beyond this many input shapes, the cached graphs are dropped and recaptured


class _Graph:
    """One captured CUDA graph with its static input and output buffers."""

    def __init__(self, graph, in1: torch.Tensor, in2: torch.Tensor, out: torch.Tensor):
        self.graph, self.in1, self.in2, self.out = graph, in1, in2, out


class Predictor:
    """Eval-only FlowNetS with the post-network pipeline around it.

    `predictor(img1, img2)`: (B, 3, H, W) floats in [0, 1] on any device -> (B, 2, H, W) float32
    flow in pixels on `device`. `options` (InferenceOptions) with keyword overrides says what runs
    around the network: Predictor(model, device="cpu", passes=2). The given model is left as it was.
    On CUDA with cuda_graphs, the first call of each (B, H, W) captures the whole pipeline in one
    graph and later calls replay it. compile=True applies torch.compile to the network body.
    """

    def __init__(self, model: FlowNetS, *, device: torch.device | str, dtype: torch.dtype = torch.float32,
                 channels_last: bool | None = None, compile: bool = False, cuda_graphs: bool = True,
                 options: InferenceOptions | None = None, **overrides):
        self.device = torch.device(device)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        self.options = dataclasses.replace(options or InferenceOptions(), **overrides)
        self.pipeline = build_pipeline(self.options)
        self.dtype = dtype
        self.is_cuda = self.device.type == "cuda"
        self.channels_last = True if channels_last is None else bool(channels_last)
        if self.options.backend == "onnxruntime":  # onnxruntime takes NCHW arrays: no layout to convert
            from .ortbackend import check_backend

            check_backend("onnxruntime", self.device.type, "fp32" if dtype == torch.float32 else str(dtype),
                          compile=compile)
            self.channels_last = False
        self.cuda_graphs = bool(cuda_graphs) and self.is_cuda
        self.compile = bool(compile)
        if self.compile:
            check_compile_toolchain(self.device)
        self.config = model.config
        net = fold_batchnorm(model).to(device=self.device, dtype=dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.model = net.requires_grad_(False)
        self._mean = net.rgb_mean.to(dtype).view(1, 6, 1, 1)
        self._compiled = None
        self._ort = None
        if self.options.backend == "onnxruntime":
            from .ortbackend import OrtBody

            self._ort = OrtBody(net)
        self._graphs: dict[tuple[int, int, int], _Graph] = {}
        self._pool = None

    # -- the computation -------------------------------------------------------------------------
    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """Padded, mean-subtracted (B, 6, H, W) -> the finest flow (pyramid()[0]: flow2 at 1/4 of H, W,
        or at H, W with the convex upsampler) in units of flow/flow_scale."""
        if self._ort is not None:
            return self._ort(x)
        if not self.compile:
            return self.model.pyramid(x)[0]
        if self._compiled is None:
            self._compiled = torch.compile(self.model.pyramid, dynamic=False)
        try:
            return self._compiled(x)[0]
        except Exception as exc:
            if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")) and not _is_out_of_memory(exc):
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise DeviceError(f"compile=True failed ({type(exc).__name__}: {first}); run without it") from None
            raise

    def _forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) on the predictor's device and dtype -> (B, 2, H, W) float32 flow in pixels."""
        return run_pipeline(self.pipeline, img1, img2, self._network)

    def _network(self, img1: torch.Tensor, img2: torch.Tensor, views: tuple[int, ...]) -> torch.Tensor:
        return averaged_over_views(self._flow, img1, img2, views)

    def _flow(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        height, width = img1.shape[-2:]
        x, (top, left) = pad_to_stride(torch.cat((img1, img2), 1).sub_(self._mean))  # (B, 6, H64, W64)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        finest = self._body(x).float().contiguous()  # NCHW: bilinear is 4x faster than on channels_last
        finest = finest * self.config.flow_scale  # scaled before upsampling: bilinear is linear
        flow = self.model.full_resolution(finest)
        return flow[:, :, top:top + height, left:left + width]

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        if img1.ndim == 4 and img1.shape == img2.shape and 0 < min(img1.shape[-2:]) < MIN_SIDE:
            return upscaled_for_network(img1, img2, self)
        check_input(img1, img2)
        batch, height, width = img1.shape[0], *img1.shape[-2:]
        try:
            with torch.inference_mode(), self._on_device():
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

    @contextlib.contextmanager
    def _on_device(self):
        """On CUDA, make this predictor's GPU the current one: streams, graph capture and the cache
        calls act on the current device, which is cuda:0 unless set. cuDNN autotuning is on inside
        (fixed shapes per graph: pick the fastest kernels once) and restored after."""
        if not self.is_cuda:
            yield
            return
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            with torch.cuda.device(self.device):
                yield
        finally:
            torch.backends.cudnn.benchmark = benchmark

    def _does_not_fit(self, batch: int, height: int, width: int) -> OutOfMemoryError:
        self.release()
        return OutOfMemoryError.for_input(height, width, batch, where="GPU memory" if self.is_cuda else "memory")

    def release(self) -> None:
        """Drop captured CUDA graphs and return cached GPU memory."""
        self._graphs.clear()
        self._pool = None
        if self.is_cuda:
            with torch.cuda.device(self.device):
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
            # thread_local: decoding threads (predict_many) may run while this thread captures. The
            # stream is ours: torch's default capture stream is made once, on whichever GPU came first.
            with torch.cuda.graph(graph, pool=self._pool, stream=side, capture_error_mode="thread_local"):
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
            with self._on_device():  # pinned memory belongs to the current GPU's context
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
        check_frame_pair(img1, img2)
        height, width = img1.shape[:2]
        if max_side is not None:
            img1, img2, _ = resize_for_max_side(img1, img2, max_side)
        flow = self.predict_uint8(img1[None], img2[None])[0]
        return resize_flow(flow, height, width)


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


def load_predictor(weights=None, *, device: str = "auto", dtype: str = "fp32",
                   options: InferenceOptions | None = None, **overrides) -> "Predictor":
    """The shared fast inference path (BN folded, channels-last, CUDA graphs where available);
    `options` and keyword overrides as for Predictor; options.backend="onnxruntime" runs on the CPU."""
    from ..checkpoint import load_model
    from ..device import resolve_device, resolve_dtype
    from .ortbackend import check_backend

    options = dataclasses.replace(options or InferenceOptions(), **overrides)
    torch_device = resolve_device(check_backend(options.backend, device, dtype))
    return Predictor(load_model(weights, device=torch_device), device=torch_device,
                     dtype=resolve_dtype(dtype, torch_device), options=options)
