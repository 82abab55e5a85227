"""Do the generator's kernels make the same scenes on another device and compiled?

Renders one batch per variant from the same seed and reports how far each is from the first: the
largest colour and flow differences and the share of pixels whose front-most layer differs; exits 1
when a variant is beyond the tolerances. The size defaults to one not divisible by 4, where
in-place writes into strided planes are easiest to get wrong.

    python benchmarks/kernel_check.py --variants cpu cpu:compile cuda cuda:compile --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from flowcli.data.scenes import SynthConfig

from flowcli.data.synth import SceneGenerator


def render(variant: str, config: SynthConfig, batch_size: int, seed: int):
    device, _, mode = variant.partition(":")
    generator = SceneGenerator(config, seed=seed, device=device, compile=mode == "compile")
    start = time.perf_counter()
    scene = generator.render(batch_size)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return scene, time.perf_counter() - start


def compare(reference, other) -> dict[str, float]:
    """Colour and flow gaps over the pixels whose front-most layer agrees (a pixel right at a mask's
    edge may take the other layer under other rounding: counted apart, as a share)."""
    def gap(a, b, agree):  # (B, C, H, W) against (B, H, W)
        diff = (a.cpu().double() - b.cpu().double()).abs().amax(1)
        return float(diff[agree].max()) if agree.any() else 0.0
    agree1 = reference.layers1 == other.layers1.cpu()
    agree2 = reference.layers2 == other.layers2.cpu()
    return {"image_max_diff": max(gap(reference.img1, other.img1, agree1), gap(reference.img2, other.img2, agree2)),
            "flow_max_diff": gap(reference.flow, other.flow, agree1),
            "layer_mismatch_share": 1 - float(torch.cat([agree1.flatten(), agree2.flatten()]).float().mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["cpu", "cpu:compile"],
                        help="DEVICE or DEVICE:compile; the first is the reference")
    parser.add_argument("--size", default="375x499", help="HEIGHTxWIDTH")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest colour or flow (px) difference accepted where the layers agree")
    parser.add_argument("--layer-tolerance", type=float, default=1e-4,
                        help="largest share of pixels whose front-most layer may differ")
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
    off = [r["variant"] for r in rows[1:] if max(r["image_max_diff"], r["flow_max_diff"]) > args.tolerance
           or r["layer_mismatch_share"] > args.layer_tolerance]
    if off:
        raise SystemExit(f"scenes differ from {args.variants[0]}'s beyond the tolerances: {', '.join(off)}")


if __name__ == "__main__":
    main()
