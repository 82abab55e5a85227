"""backend="onnxruntime": the network body runs as an ONNX model in onnxruntime (CPU, fp32) and
flowcli's pipeline does the rest, so results match backend="torch" within float rounding.

The model is exported from the Predictor's folded network on first use and cached by a hash of its
weights (FLOWCLI_CACHE, else ~/.cache/flowcli/onnx): an export takes seconds, a cached load
milliseconds. Whether it is faster than torch: benchmarks/README.md, "ONNX export".
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import DeviceError, OutputError
from ..io import atomic_path
from ..model import FlowNetS
from .export import INPUT, OPSET, onnx_model, ort_session, require_onnx


def check_backend(backend: str, device: str, dtype: str, *, compile: bool = False) -> str:
    """Refuse what onnxruntime does not run here; returns the device to use ('auto' -> 'cpu')."""
    if backend != "onnxruntime":
        return device
    if str(device) not in ("auto", "cpu"):
        raise DeviceError(f"device={device}: backend=onnxruntime runs on the CPU here; use device=cpu, "
                          "or backend=torch on CUDA")
    if dtype != "fp32":
        raise DeviceError(f"dtype={dtype}: backend=onnxruntime runs the fp32 network; use dtype=fp32 or backend=torch")
    if compile:
        raise DeviceError("compile=True compiles the torch network; leave it out with backend=onnxruntime")
    require_onnx()
    return "cpu"


class OrtBody:
    """Callable like the Predictor's torch body: (B, 6, H64, W64) float32 -> the finest flow
    (flow2 at H64/4, W64/4, or at H64, W64 with the convex upsampler)."""

    def __init__(self, net: FlowNetS, *, threads: int | None = None):
        self.session = ort_session(cached_model(net), threads=threads or torch.get_num_threads())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            out = self.session.run(None, {INPUT: array})[0]  # the one output, flow2 or flow
        except Exception as exc:  # onnxruntime's errors derive from Exception, not RuntimeError
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            if any(word in first.lower() for word in ("bad_alloc", "failed to allocate", "out of memory")):
                raise RuntimeError(f"onnxruntime: out of memory ({first})") from None  # the Predictor names size and batch
            raise DeviceError(f"backend=onnxruntime failed ({type(exc).__name__}: {first}); "
                              "use backend=torch") from None
        return torch.from_numpy(out)


def cache_dir() -> Path:
    root = os.environ.get("FLOWCLI_CACHE") or Path.home() / ".cache" / "flowcli"
    return Path(root) / "onnx"


def cached_model(net: FlowNetS) -> bytes | Path:
    """The ONNX file of this network from the cache, exported and stored on a miss. An unwritable
    cache is not an error: the model is then exported on every use."""
    from .. import __version__

    digest = hashlib.sha256(f"{net.config.to_json()} {__version__} {torch.__version__} {OPSET}".encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    path = cache_dir() / f"{digest.hexdigest()[:32]}.onnx"
    if path.is_file():
        return path
    data = onnx_model(net, dtype="fp32").SerializeToString()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # concurrent processes write the same bytes
            tmp.write_bytes(data)
    except (OSError, OutputError):
        return data
    return path
