"""How many Flying-Chairs-style pairs per second the generator makes (it bounds training speed).

    python benchmarks/synth_speed.py --device cpu --batch-size 16 --size 384x512 --seconds 10
"""

from __future__ import annotations

import argparse

import torch

from flowcli.training.config import parse_size as parse_hw
from flowcli.data.synth import measure_speed
from report import command_line


def parse_size(text: str) -> tuple[int, int]:
    try:
        return parse_hw(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=parse_size, default=(384, 512), help="HEIGHTxWIDTH")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed duration after warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = args.size
    r = measure_speed(device=args.device, batch_size=args.batch_size, height=height, width=width,
                      seconds=args.seconds)
    print("| device | threads | batch | size (HxW) | pairs | seconds | pairs/s | bank build s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {r.device} | {torch.get_num_threads()} | {r.batch_size} | {height}x{width} "
          f"| {r.pairs} | {r.seconds:.2f} | {r.pairs_per_s:.1f} | {r.init_s:.2f} |")
    print(f"\ncommand: {command_line(__file__, argv)}")


if __name__ == "__main__":
    main()
