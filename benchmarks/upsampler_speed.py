"""How long the convex upsampler takes by itself: flowcli's inference path (model.convex_upsample_pixels)
against 0.17.0's (the 1x1 conv on channels-last features, the logits made NCHW, a softmax and nine
in-place multiply-adds, kept here as the baseline), and the training path (model.convex_upsample,
one einsum) forward and backward. The variants take turns call by call, so a shared machine's drift
hits them alike; medians and 10th percentiles in ms.

    python benchmarks/upsampler_speed.py                        # batch 1 at 384x512, 300 calls each
    python benchmarks/upsampler_speed.py --batch 16 --size 320x448 --calls 20 --train
    python benchmarks/upsampler_speed.py --predictor fast --calls 80   # inside the default pipeline

The head's hidden width is the default network's (16 channels at width 0.25; --hidden 32 for the
accurate one). `--predictor WEIGHTS` times the whole default pipeline (a convex network's
Predictor, batch 1) with each inference path instead, the process keeping freed memory as the CLI
does unless FLOWCLI_KEEP_FREED_MEMORY=0: benchmarks/README.md, Convex upsampler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import flowcli.model
from flowcli.model import FACTOR, convex_upsample, convex_upsample_pixels
from flowcli.training.config import parse_size


def upsample_017(flow: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """0.17.0's inference path, for comparison: NCHW logits, softmax over the 9 taps, 9 addcmul_."""
    batch, _, height, width = flow.shape
    logits = F.conv2d(hidden, weight, bias).contiguous()
    weights = logits.view(batch, 9, FACTOR * FACTOR, height, width).softmax(dim=1)
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    up = flow.new_zeros((batch, 2, FACTOR * FACTOR, height, width))
    for k in range(9):
        dy, dx = divmod(k, 3)
        up.addcmul_(weights[:, k].unsqueeze(1), padded[:, :, dy:dy + height, dx:dx + width].unsqueeze(2))
    return F.pixel_shuffle(up.reshape(batch, 2 * FACTOR * FACTOR, height, width), FACTOR)


def inputs(batch: int, size: tuple[int, int], hidden: int, seed: int = 0):
    """A coarse flow, channels-last hidden features (the engine's layout) and a 1x1 conv's weights."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size[0] // FACTOR, size[1] // FACTOR
    flow = torch.randn(batch, 2, height, width, generator=generator) * 5
    features = torch.randn(batch, hidden, height, width, generator=generator)
    features = features.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(9 * FACTOR * FACTOR, hidden, 1, 1, generator=generator) * 0.5
    bias = torch.randn(9 * FACTOR * FACTOR, generator=generator)
    return flow, features, weight, bias


def time_turns(variants: dict, calls: int) -> dict[str, dict[str, float]]:
    """Each variant once per round, `calls` rounds after one warm-up round: median and p10 in ms."""
    for run in variants.values():
        run()
    times = {name: [] for name in variants}
    for _ in range(calls):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": statistics.median(t), "p10_ms": sorted(t)[len(t) // 10]} for name, t in times.items()}


def measure(batch: int, size: tuple[int, int], hidden: int, calls: int, train: bool) -> dict[str, dict[str, float]]:
    flow, features, weight, bias = inputs(batch, size, hidden)
    with torch.no_grad():
        want = convex_upsample(flow, F.conv2d(features, weight, bias))
        for run in (convex_upsample_pixels, upsample_017):
            assert torch.allclose(run(flow, features, weight, bias), want, atol=1e-3), run.__name__
    variants = {"inference (0.18.0)": lambda: convex_upsample_pixels(flow, features, weight, bias),
                "inference (0.17.0)": lambda: upsample_017(flow, features, weight, bias)}
    with torch.no_grad():
        result = time_turns(variants, calls)
    if train:
        trainable = weight.clone().requires_grad_()

        def step():
            convex_upsample(flow, F.conv2d(features, trainable, bias)).square().mean().backward()

        result.update(time_turns({"training forward + backward": step}, calls))
    return result


def measure_predictor(weights: str, size: tuple[int, int], calls: int) -> dict[str, dict[str, float]]:
    """The default pipeline of a convex network, batch 1, with each inference path in turn (swapped
    in as model.convex_upsample_pixels, which FlowNetS calls without gradients)."""
    from flowcli.device import keep_freed_memory
    from flowcli.inference.engine import load_predictor

    keep_freed_memory()  # as `flowcli predict/eval/bench` do on a CPU
    predictor = load_predictor(weights, device="cpu")
    if predictor.model.upsample_mask is None:
        raise SystemExit(f"{weights}: has no convex upsampler")
    generator = torch.Generator().manual_seed(0)
    img1, img2 = (torch.rand(1, 3, *size, generator=generator) for _ in range(2))
    paths = {"inference (0.18.0)": convex_upsample_pixels, "inference (0.17.0)": upsample_017}

    def run_with(path):
        def run():
            flowcli.model.convex_upsample_pixels = path
            try:
                predictor(img1, img2)
            finally:
                flowcli.model.convex_upsample_pixels = convex_upsample_pixels
        return run

    return time_turns({f"pipeline, {name}": run_with(path) for name, path in paths.items()}, calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=parse_size, default=(384, 512), help="the input's HEIGHTxWIDTH (flow at 1/4)")
    parser.add_argument("--hidden", type=int, default=16, help="the head's hidden channels (16: fast, 32: accurate)")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per variant")
    parser.add_argument("--train", action="store_true", help="also time the training path, forward and backward")
    parser.add_argument("--predictor", metavar="WEIGHTS", help="time the default pipeline of this convex network instead")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.size[0] % FACTOR or args.size[1] % FACTOR or min(args.batch, args.calls, args.hidden) < 1:
        parser.error(f"--size: sides must be multiples of {FACTOR}; --batch, --calls, --hidden at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.predictor:
        result = measure_predictor(args.predictor, args.size, args.calls)
    else:
        result = measure(args.batch, args.size, args.hidden, args.calls, args.train)
    print(f"# batch {args.batch} at {args.size[0]}x{args.size[1]}, hidden {args.hidden}, {args.calls} calls each, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, figures in result.items():
        print(f"{name:30s} median {figures['median_ms']:8.2f} ms   p10 {figures['p10_ms']:8.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "size": list(args.size), "hidden": args.hidden, "calls": args.calls,
                       "threads": torch.get_num_threads(), "ms": result}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
