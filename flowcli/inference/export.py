"""ONNX export of the network body: the BN-folded FlowNetS from the stacked, mean-subtracted, padded
pair to its finest flow (1/4 resolution, or full with the convex upsampler), with dynamic batch, height and width (multiples of 64). What runs
before and after it (mean subtraction, padding, flow scale, upsampling, refinement, smoothing) stays
in flowcli and is written in the model's metadata and in README ("Deploy without PyTorch").

Every export is checked against PyTorch (the unfolded eval-mode model, fp32) on random and generated
pairs at two sizes before the file is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, FlowcliError, OutputError
from ..model import MIN_SIDE, RGB_MEAN, STRIDE, FlowNetS, ModelConfig, pad_to_stride
from ..results import JsonResult
from .fold import fold_batchnorm

ONNX_EXTRA = 'pip install -e ".[onnx]"'
OPSET = 18  # onnxruntime >= 1.14 runs it; the dynamo exporter's own default at torch 2.13
INPUT = "pair"
# The output by upsampler: FlowNet's finest level at 1/4 resolution, or the full-resolution flow
OUTPUTS = {"bilinear": "flow2", "convex": "flow"}
EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
# Max |ONNX - PyTorch fp32| in px allowed by the parity check. fp16 keeps 11 significant bits: one
# rounding of a 60 px flow is 0.03 px, and ~20 layers of fp16 activations add up to a few tenths at
# worst on noise pairs with the shipped weights (measured: benchmarks/README.md, "ONNX export"), so 2 px catches a
# wrong graph (a wrong layer moves the flow by many px) without failing on honest fp16 rounding.
TOLERANCE_PX = {"fp32": 1e-3, "fp16": 2.0}
CHECK_SIZES = ((384, 512), (256, 320))  # the second is padded to 256x320: not a multiple of 64 in width


@dataclass(frozen=True)
class ParityCase:
    """One parity check: the pair's source and size, the largest |ONNX - PyTorch| over its flow in px."""

    source: str  # "random" or "generated"
    height: int
    width: int
    max_abs_px: float


@dataclass(frozen=True)
class ExportResult(JsonResult):
    output: str
    dtype: str
    opset: int
    bytes: int
    seconds: float
    tolerance_px: float
    parity: tuple[ParityCase, ...]
    metadata: dict[str, str]


def require_onnx() -> None:
    """One line naming the install command when the optional packages are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise FlowcliError(f"ONNX needs the optional packages onnx, onnxscript and onnxruntime "
                           f"({exc.name or 'one'} is missing): {ONNX_EXTRA}") from None


class NetworkBody(nn.Module):
    """What is exported: (B, 6, H, W) -> the finest flow in units of flow / flow_scale: flow2
    (B, 2, H/4, W/4), or (B, 2, H, W) with the convex upsampler (model.FlowNetS.pyramid)."""

    def __init__(self, net: FlowNetS):
        super().__init__()
        self.net = net

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net.pyramid(pair)[0]


def onnx_model(net: FlowNetS, *, dtype: str = "fp32", metadata: dict[str, str] | None = None):
    """The exported onnx.ModelProto of a (folded) network, dynamic in batch, height and width."""
    require_onnx()
    body = NetworkBody(net).eval().to(device="cpu", dtype=EXPORT_DTYPES[dtype])
    # Example sides of 2 and 3 strides: a side of 1 stride would be specialised (broadcasting) and
    # make the exported model static.
    example = torch.zeros(2, 6, 2 * STRIDE, 3 * STRIDE, dtype=EXPORT_DTYPES[dtype])
    rows, cols = torch.export.Dim("rows", min=1, max=1024), torch.export.Dim("cols", min=1, max=1024)
    shapes = {"pair": {0: torch.export.Dim("batch", min=1, max=65536), 2: STRIDE * rows, 3: STRIDE * cols}}
    with _quiet(), torch.no_grad():  # the inference path of the convex upsampler (model.FlowNetS._convex)
        program = torch.onnx.export(body, (example,), input_names=[INPUT], output_names=[OUTPUTS[net.config.upsampler]],
                                    dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, verbose=False)
    model = program.model_proto
    model.producer_name = "flowcli"
    model.doc_string = "FlowNetS network body exported by flowcli; see metadata 'input' and 'output'"
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def model_card(config: ModelConfig, *, dtype: str, weights: str, sha256: str) -> dict[str, str]:
    """The facts a runtime needs, as ONNX metadata (str -> str)."""
    from .. import __version__

    mean = RGB_MEAN if config.subtract_mean else (0.0, 0.0, 0.0)
    return {
        "flowcli_version": __version__,
        "arch": config.arch,
        "width": f"{config.width:g}",
        "flow_scale": f"{config.flow_scale:g}",
        "batch_norm": "folded into the convolutions",
        "config": config.to_json(),
        "dtype": dtype,
        "stride": str(STRIDE),
        "min_side": str(MIN_SIDE),
        "rgb_mean": json.dumps(list(mean)),
        "input": (f"{INPUT}: (B, 6, H, W) {dtype}; channels 0-2 image 1 and 3-5 image 2, RGB in [0, 1] "
                  f"minus rgb_mean per frame; H and W multiples of {STRIDE}"),
        "pad_to": (f"multiples of {STRIDE}: pad H and W up with edge replication, split evenly "
                   "(top = pad_h // 2, left = pad_w // 2, the rest bottom/right); frames under "
                   f"{MIN_SIDE} px: upsample bilinearly by the smallest integer factor that reaches "
                   f"{MIN_SIDE}, divide the flow by it"),
        "output": (f"{OUTPUTS['bilinear']}: (B, 2, H/4, W/4), (u, v) divided by flow_scale; multiply by flow_scale, "
                   "upsample x4 bilinearly (align_corners=False), crop the padding: flow in px"
                   if config.upsampler == "bilinear" else
                   f"{OUTPUTS['convex']}: (B, 2, H, W), (u, v) divided by flow_scale, already upsampled by the network's "
                   "learned convex upsampler; multiply by flow_scale, crop the padding: flow in px"),
        "weights": weights,
        "weights_sha256": sha256,
    }


def export_onnx(output: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                width: float | None = None, dtype: str = "fp32", overwrite: bool = False,
                check_sizes: tuple[tuple[int, int], ...] = CHECK_SIZES, seed: int = 0,
                on_progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export the BN-folded network body of `weights` (default: the shipped weights; "random": a
    seeded untrained network of `width`) to an ONNX file, after checking it against PyTorch.

    `width`, when given with a weights file, must be the file's. The file is refused if it exists
    (overwrite=True replaces it) and is written only when every parity case is within
    TOLERANCE_PX[dtype]; otherwise a FlowcliError names the worst case.
    """
    from ..checkpoint import RANDOM, RANDOM_CONFIG, load_model, read_config, weights_path
    from ..io import atomic_path, check_writable

    if dtype not in EXPORT_DTYPES:
        raise FlowcliError(f"dtype={dtype}: ONNX export writes fp32 or fp16 (onnxruntime's CPU provider "
                           "has no bf16 convolution)")
    output = check_writable(output, overwrite=overwrite)
    if output.suffix.lower() != ".onnx":
        raise OutputError(f"{output}: an ONNX model is written as .onnx, got {output.suffix or 'no suffix'!r}")
    require_onnx()
    start = time.perf_counter()
    step = on_progress or (lambda _: None)
    if weights is not None and str(weights) == RANDOM:
        config = RANDOM_CONFIG if width is None else replace(RANDOM_CONFIG, width=width)
        model = load_model(RANDOM, config=config, seed=seed)
        label, sha256 = f"random (seed {seed})", "none (untrained)"
    else:
        path = weights_path(weights)
        held = read_config(path)
        if width is not None and held.width != width:
            raise CheckpointError(f"{path}: holds a network of width {held.width:g}, but width={width:g} "
                                  "was asked for (leave it out to export the file's)")
        model = load_model(path)
        label, sha256 = path.name, hashlib.sha256(path.read_bytes()).hexdigest()
    step("export")
    card = model_card(model.config, dtype=dtype, weights=label, sha256=sha256)
    proto = onnx_model(fold_batchnorm(model), dtype=dtype, metadata=card)
    data = proto.SerializeToString()
    parity = check_parity(data, model, sizes=check_sizes, dtype=dtype, on_case=step)
    tolerance = TOLERANCE_PX[dtype]
    worst = max(parity, key=lambda case: case.max_abs_px)
    if not worst.max_abs_px <= tolerance:  # NaN fails too
        raise FlowcliError(f"parity check failed: max |ONNX - PyTorch| is {worst.max_abs_px:.3g} px on the "
                           f"{worst.source} {worst.height}x{worst.width} pair, over {tolerance:g} px; "
                           f"{output} not written")
    with atomic_path(output) as tmp:
        tmp.write_bytes(data)
    return ExportResult(str(output), dtype, OPSET, len(data), time.perf_counter() - start, tolerance,
                        parity, card)


def check_parity(model_bytes: bytes, model: FlowNetS, *, sizes=CHECK_SIZES, dtype: str = "fp32",
                 on_case: Callable[[str], None] | None = None) -> tuple[ParityCase, ...]:
    """Max |ONNX - PyTorch| in px (flow2 times flow_scale: upsampling cannot raise it) on a random and
    a generated pair at each size, both prepared as flowcli prepares them (mean, padding)."""
    from ..data.scenes import SynthConfig
    from ..data.synth import SceneGenerator

    session = ort_session(model_bytes, threads=torch.get_num_threads())
    reference = model.float().eval()
    mean = reference.rgb_mean.view(1, 6, 1, 1)
    cases = []
    for height, width in sizes:
        generator = SceneGenerator(SynthConfig(height=height, width=width, texture_count=8), seed=1)
        noise = torch.Generator().manual_seed(height * 10_000 + width)
        pairs = {"random": [torch.rand(1, 3, height, width, generator=noise) for _ in range(2)],
                 "generated": generator.batch(1)[:2]}
        for source, (img1, img2) in pairs.items():
            if on_case:
                on_case(f"parity {source} {height}x{width}")
            x, _ = pad_to_stride(torch.cat((img1, img2), 1) - mean)
            with torch.inference_mode():
                expected = reference.pyramid(x)[0]
            got = session.run(None, {INPUT: x.to(EXPORT_DTYPES[dtype]).numpy()})[0]  # the one output
            diff = (torch.from_numpy(got).float() - expected).abs().max().item() * model.config.flow_scale
            cases.append(ParityCase(source, height, width, diff))
    return tuple(cases)


def ort_session(model: bytes | str | os.PathLike, *, threads: int):
    """An onnxruntime CPU session: `threads` intra-op threads, no spinning (the pipeline's torch ops
    share the cores with it), all graph optimisations."""
    require_onnx()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings are not for the terminal
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (unexported) exception types
        raise CheckpointError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:200]}") from None


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress and logs warnings about packages flowcli does not use (torchvision)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
