"""How hard generated scenes are next to real Flying Chairs, as seen by a classical method.

    pip install opencv-python-headless        # needed by this script only
    python benchmarks/realism.py --count 48
    python benchmarks/realism.py --count 48 --data /path/to/FlyingChairs_sample

Why: we cannot train against the real Chairs data, but we can make the generator's scenes pose the
same problem. Two numbers describe a set of pairs without any network: its mean displacement (the
EPE of zero flow) and the EPE of OpenCV DIS (medium), a method that fails where matching is
ambiguous (periodic or flat texture) or motion is large. On 9 real Chairs pairs they were 10.51 and
3.70 (ratio 0.35, see ../shared/notes/training-facts.md). For generated scenes the script also
splits both numbers between background and foreground objects, so it shows which part is off.

Rows: the generator as shipped, its "wide" motion profile (large and turning-in-depth motions, for
training beside the default), and the ablations that undo each realism change (the public
generator's wider object/background motions; any texture, periodic and flat ones included, as a
background). Every row renders scenes of the same seed (--seed, default flowcli eval's TEST_SEED);
a row whose setting draws more random numbers (the wide profile's turns in depth) also gets other
textures from there on, so its scenes are alike, not identical. DIS gets grayscale uint8 frames as
in classical.py.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

from classical import _gray, folder_source, import_opencv
from report import command_line

from flowcli.data.scenes import MOTIONS

PUBLIC_MOTIONS = {"bg_translate": 40.0, "obj_translate": 120.0, "obj_rotate_deg": 30.0, "obj_scale": (0.8, 1.2)}
ROWS = {
    "generated (flowcli defaults)": {},
    "generated, --motion wide": MOTIONS["wide"],
    "generated, public generator's motion ranges": PUBLIC_MOTIONS,
    "generated, any texture as background": {"photo_like_backgrounds": False},
    "generated, both of the above": {**PUBLIC_MOTIONS, "photo_like_backgrounds": False},
}


def build_parser() -> argparse.ArgumentParser:
    from flowcli.inference.evaluate import TEST_SEED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48, help="generated pairs per row (default 48)")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help="scene seed (default: flowcli eval's)")
    parser.add_argument("--data", type=Path, default=None, help="a Flying Chairs folder to measure as well")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers as JSON here")
    return parser


def measure_generated(cv2, overrides: dict, count: int, seed: int) -> dict:
    """Zero-flow and DIS EPE over all pixels, and split into background / foreground pixels."""
    import numpy as np

    from flowcli.data.scenes import SynthConfig

    from flowcli.data.synth import SceneGenerator

    generator = SceneGenerator(replace(SynthConfig(), **overrides), seed=seed)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    sums = {k: 0.0 for k in ("zero", "dis", "bg_zero", "bg_dis", "fg_zero", "fg_dis", "bg", "fg")}
    for _ in range(count):
        scene = generator.render(1)
        gt = scene.flow[0].permute(1, 2, 0).numpy()
        pred = dis.calc(_gray(scene.img1, cv2), _gray(scene.img2, cv2), None)
        zero, err = np.linalg.norm(gt, axis=-1), np.linalg.norm(pred - gt, axis=-1)
        fg = scene.layers1[0].numpy() > 0
        for part, mask in (("bg", ~fg), ("fg", fg)):
            sums[part] += mask.sum()
            sums[f"{part}_zero"] += zero[mask].sum()
            sums[f"{part}_dis"] += err[mask].sum()
    pixels = sums["bg"] + sums["fg"]
    return {"pairs": count, "zero": (sums["bg_zero"] + sums["fg_zero"]) / pixels,
            "dis": (sums["bg_dis"] + sums["fg_dis"]) / pixels, "fg_share": sums["fg"] / pixels,
            **{f"{p}_{m}": sums[f"{p}_{m}"] / max(sums[p], 1) for p in ("bg", "fg") for m in ("zero", "dis")}}


def measure_folder(cv2, folder: Path) -> dict:
    import numpy as np

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    count, items = folder_source(folder)
    zero = err = pixels = 0.0
    for _, img1, img2, gt, valid in items:
        truth = gt[0].permute(1, 2, 0).numpy()
        pred = dis.calc(_gray(img1, cv2), _gray(img2, cv2), None)
        mask = valid[0].numpy()
        zero += np.linalg.norm(truth, axis=-1)[mask].sum()
        err += np.linalg.norm(pred - truth, axis=-1)[mask].sum()
        pixels += mask.sum()
    return {"pairs": count, "zero": zero / max(pixels, 1), "dis": err / max(pixels, 1)}


def markdown(results: dict[str, dict]) -> str:
    cell = lambda r, k: f"{r[k]:.2f}" if k in r else "-"
    lines = ["| scenes | pairs | zero-flow EPE (mean px) | DIS EPE | DIS / zero | foreground share | "
             "background: zero / DIS | foreground: zero / DIS |", "|---" * 8 + "|"]
    for name, r in results.items():
        share = f"{100 * r['fg_share']:.0f} %" if "fg_share" in r else "-"
        lines.append(f"| {name} | {r['pairs']} | {r['zero']:.2f} | {r['dis']:.2f} | {r['dis'] / r['zero']:.2f} | "
                     f"{share} | {cell(r, 'bg_zero')} / {cell(r, 'bg_dis')} | {cell(r, 'fg_zero')} / {cell(r, 'fg_dis')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cv2 = import_opencv()
    if cv2 is None:
        return 1
    cv2.setNumThreads(1)
    results = {name: measure_generated(cv2, over, args.count, args.seed) for name, over in ROWS.items()}
    if args.data is not None:
        results[f"real: {args.data}"] = measure_folder(cv2, args.data)
    command = command_line(__file__, argv)
    print(f"{command}\n{platform.processor() or platform.machine()}, OpenCV {cv2.__version__}\n")
    print(markdown(results))
    if args.json is not None:
        args.json.write_text(json.dumps({"command": command, "results": results}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
