"""Sweep batch sizes x input sizes with flowcli.bench and write a markdown table.

    python benchmarks/sweep.py --device cuda --dtype fp16 --out results.md
    python benchmarks/sweep.py --device cpu --batch-sizes 1,2 --sizes 384x512 --weights random

The file starts with the exact command and the hardware, so a table can be reproduced.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from flowcli.training.config import parse_size as parse_hw
from report import command_line


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [parse_hw(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--batch-sizes", type=parse_ints, default=None,
                        help="e.g. 1,2,4 (default: 1..256 on CUDA, 1,2,4 on CPU)")
    parser.add_argument("--sizes", type=parse_sizes, default=None,
                        help="HxW list, e.g. 384x512,768x1024 (default: + 1080x1920 on CUDA)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--weights", default=None, help="weights file or 'random' (default: shipped)")
    parser.add_argument("--model-width", type=float, default=None, help="width of a random model (default: the shipped default's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="plain eager calls on CUDA")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--min-seconds", type=float, default=0.0, help="time each point at least this long")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("results.md"))
    return parser


def hardware_lines(device: str, threads: int | None = None) -> list[str]:
    import torch

    from flowcli.device import cpu_model, describe, resolve_device

    torch_device = resolve_device(device)
    lines = [f"- device: {describe(torch_device)} ({torch_device})",
             f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.platform()}"]
    if torch_device.type == "cuda":
        props = torch.cuda.get_device_properties(torch_device)
        lines.append(f"- GPU memory {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
                     f"cuDNN {torch.backends.cudnn.version()}")
    else:
        lines.append(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, "
                     f"{threads or torch.get_num_threads()} torch threads")  # run_sweep applies --threads
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flowcli.inference.bench import markdown_table, run_sweep
    from flowcli.errors import FlowcliError

    command = command_line(__file__, argv)
    try:
        hardware = hardware_lines(args.device, args.threads)
        print(command)
        print("\n".join(hardware))

        def show(row) -> None:
            size = f"{row.height}x{row.width} batch {row.batch_size}"
            if hasattr(row, "skipped"):
                print(f"{size}: skipped ({row.skipped})", flush=True)
            else:
                print(f"{size}: {row.median_ms_per_image:.3f} ms/img, {row.images_per_s:.1f} img/s", flush=True)

        rows = run_sweep(device=args.device, batch_sizes=args.batch_sizes, sizes=args.sizes, dtype=args.dtype,
                         compile=args.compile, weights=args.weights, model_width=args.model_width,
                         warmup=args.warmup, runs=args.runs, min_seconds=args.min_seconds,
                         threads=args.threads, cuda_graphs=not args.no_cuda_graphs, on_result=show)
    except FlowcliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    first = next((r for r in rows if not hasattr(r, "skipped")), None)
    header = [f"# flowcli bench sweep ({time.strftime('%Y-%m-%d %H:%M')})", "", "```", command, "```", "",
              *hardware, f"- weights: {first.weights if first else args.weights}, dtype {args.dtype}, "
              f"compile {args.compile}, params {(first.params if first else 0) / 1e6:.2f}M",
              "- times: median/p90 per image over timed runs, warm-up excluded", ""]
    args.out.write_text("\n".join(header) + "\n" + markdown_table(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
