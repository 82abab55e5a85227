"""What bilinear upsampling costs on its own: the EPE of the true flow averaged over 4x4 blocks (what
FlowNetS's quarter-resolution flow2 is trained towards) and upsampled 4x bilinearly, as the
network's output is. No network runs. It estimates how much of a bilinear network's EPE comes from
its last step, i.e. what a learned upsampler (`flowcli train --upsampler convex`) can hope to win;
it is not a strict bound (a block's mean is not the coarse value with the least EPE: a thin
structure moving alone in a block is better left out of it).

    python benchmarks/bilinear_cost.py                    # the three generated sets, 64 pairs each
    python benchmarks/bilinear_cost.py --count 8 --json cost.json

Sets: the `flowcli eval` test set (seed 2024113), 64 scenes of seed 99 (`--scene-seed 99`) and the
test set's scenes with `--motion wide`, each at 384x512; EPE pixel-weighted as flowcli eval reports it.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from flowcli.inference.evaluate import TEST_SEED, generated_batches
from flowcli.metrics import epe_map
from flowcli.model import FACTOR
from flowcli.training.config import parse_size

SETS = {"test": ("chairs", TEST_SEED), "seed 99": ("chairs", 99), "wide motion": ("wide", TEST_SEED)}


def bilinear_cost(flow: torch.Tensor) -> torch.Tensor:
    """Per-pixel error of the 4x4 block means of `flow` (B, 2, H, W; H, W multiples of 4) upsampled
    bilinearly (align_corners=False) back to H x W."""
    coarse = F.avg_pool2d(flow, FACTOR)
    return epe_map(F.interpolate(coarse, scale_factor=FACTOR, mode="bilinear", align_corners=False), flow)


def measure(count: int, size: tuple[int, int]) -> dict[str, float]:
    result = {}
    for name, (motion, seed) in SETS.items():
        total, pixels = 0.0, 0
        for _, _, _, flow, valid in generated_batches(count, size, "cpu", motion=motion, seed=seed):
            total += bilinear_cost(flow)[valid].double().sum().item()
            pixels += int(valid.sum())
        result[name] = total / pixels
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64, help="pairs per set (default 64, as flowcli eval)")
    parser.add_argument("--size", type=parse_size, default=(384, 512), help="HEIGHTxWIDTH, multiples of 4")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.size[0] % FACTOR or args.size[1] % FACTOR:
        parser.error(f"--size: both sides must be multiples of {FACTOR}")
    result = measure(args.count, args.size)
    for name, value in result.items():
        print(f"{name:12s} EPE of bilinear upsampling {value:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"count": args.count, "size": list(args.size), "bilinear_epe": result}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
