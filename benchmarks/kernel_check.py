"""Do the generator's kernels make the same scenes on another device and compiled?

Renders one batch per variant from the same seed and reports how far each is from eager CPU: the
largest colour and flow differences and the share of pixels whose front-most layer differs. The size
defaults to one not divisible by 4, where in-place writes into strided planes are easiest to get wrong.

    python benchmarks/kernel_check.py --variants cpu cpu:compile cuda cuda:compile --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from flowcli.data.synth import SceneGenerator, SynthConfig


def render(variant: str, config: SynthConfig, batch_size: int, seed: int):
    device, _, mode = variant.partition(":")
    generator = SceneGenerator(config, seed=seed, device=device, compile=mode == "compile")
    start = time.perf_counter()
    scene = generator.render(batch_size)
    return scene, time.perf_counter() - start


def compare(reference, other) -> dict[str, float]:
    def gap(a, b):
        return float((a.cpu().double() - b.cpu().double()).abs().max())
    layers = torch.cat([(reference.layers1 != other.layers1.cpu()).flatten(),
                        (reference.layers2 != other.layers2.cpu()).flatten()])
    return {"image_max_diff": max(gap(reference.img1, other.img1), gap(reference.img2, other.img2)),
            "flow_max_diff": gap(reference.flow, other.flow),
            "layer_mismatch_share": float(layers.float().mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["cpu", "cpu:compile"],
                        help="DEVICE or DEVICE:compile; the first is the reference")
    parser.add_argument("--size", default="375x499", help="HEIGHTxWIDTH")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    config = SynthConfig(height=height, width=width)
    reference, seconds = render(args.variants[0], config, args.batch_size, args.seed)
    rows = [{"variant": args.variants[0], "first_render_s": seconds}]
    for variant in args.variants[1:]:
        scene, seconds = render(variant, config, args.batch_size, args.seed)
        rows.append({"variant": variant, "first_render_s": seconds, **compare(reference, scene)})
    for row in rows:
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": [height, width], "batch_size": args.batch_size, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
