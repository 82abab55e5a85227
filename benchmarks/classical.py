"""FlowNetS (flowcli) against classical optical flow (OpenCV DIS, Farneback) and zero flow.

    pip install opencv-python-headless        # OpenCV is needed by this script only, not by flowcli
    python benchmarks/classical.py --count 64 --weights weights/flownets.safetensors --out results.md
    python benchmarks/classical.py --count 4 --weights random --real-pair ../shared/fixtures/flyingchairs
    python benchmarks/classical.py --count 64 --also "--tta hflip" --also "--refine 2" --real-pair ../shared/fixtures/flyingchairs

Every method runs in ONE process on the same pairs:
- the seeded generated test set of `flowcli eval` (flowcli.evaluate.generated_batches, TEST_SEED),
  `--count` pairs of `--size`; the images are generated as floats in [0, 1];
- optionally every complete triplet of a Flying Chairs folder (`--data DIR`, flowcli.data.find_samples);
- optionally a folder holding the real 50x50 Flying Chairs pair (`--real-pair DIR`).

Methods:
- FlowNetS: `flowcli.inference.load_predictor(weights, device=...)` (BN folded, channels-last, CUDA
  graphs on CUDA), called as `predictor(img1, img2)` on (1, 3, H, W) float tensors in [0, 1]. On the
  generated set it gets exactly the float tensors `flowcli eval` feeds it (so at the default size its
  EPE and accuracies reproduce `flowcli eval --count N`); on folders, the decoded uint8 images / 255.
  FlowNetS needs >= 64 px per side: the Predictor itself upsamples a smaller pair (the 50x50 real
  one) by the smallest integer factor k that reaches 64 px (k = 2 for 50x50 -> 100x100, bilinear,
  align_corners=False), predicts, resizes the flow back (bilinear; for k = 2 the mean of each 2x2
  block) and divides it by k, as `flowcli predict`/`eval` do. The two resizes are part of the timed
  call. Classical methods run at native size.
  `--also "--tta hflip --refine 2"` (repeatable) adds a FlowNetS row run with those flowcli options
  (`--tta`: mirrored pairs predicted in the same batch, flows averaged; `--passes N`: N network passes,
  each on image 2 warped by the flow so far; `--no-smooth`: the network's bilinearly upsampled flow,
  without the guided filter flowcli applies by default (write `--also=--no-smooth` when it stands
  alone, or argparse takes it for an option of this script); `--refine N`: N Lucas-Kanade steps after
  the network, the first at half resolution (default 1; `--refine 0` turns it off); all timed as part
  of the call).
- DIS: `cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(gray1, gray2, None)`.
- Farneback: `cv2.calcOpticalFlowFarneback(gray1, gray2, None, pyr_scale=0.5, levels=3 (--farneback-levels),
  winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)` (the OpenCV tutorial's values).
  OpenCV stops adding levels once a level would be under 32 px, so at 384x512 any levels >= 3 gives
  the same flow as 3 (measured: levels 3 and 5 identical), and at 50x50 only the original image is used.
- zero flow: predicts 0 everywhere (the trivial baseline; nothing to time).
The classical methods get grayscale uint8 frames: generated floats are first quantised as a saved
.ppm would be (round(x * 255)), then converted with cv2.cvtColor(RGB2GRAY).

Metrics, as flowcli eval: EPE = mean of ||gt - pred|| (flowcli.metrics.epe_map) over all valid
pixels of all pairs of a source (pixel-weighted), and the share of those pixels with error < 1/3/5 px.
ms/img is the mean wall time of the method call alone: FlowNetS from host tensors in to a host flow
out (host->device copy, padding, network, upsampling, device->host), DIS/Farneback the calc call on
grayscale uint8 frames (conversion excluded); decoding files and generating scenes are not timed.
Each method first runs once, untimed, on the first pair of each source (warm-up).
`--threads N` (default 2) sets both torch.set_num_threads and cv2.setNumThreads, so that both
sides get the same CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from flowcli.training.config import parse_size as parse_hw
from flowcli.metrics import FRAME_PARTS, SPEED_BANDS
from report import command_line
from typing import Callable, Iterator

INSTALL_HINT = "OpenCV is not installed: pip install opencv-python-headless (needed by this benchmark only)"
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}


def parse_size(text: str) -> tuple[int, int]:
    """'384x512' -> (384, 512): height first."""
    try:
        height, width = parse_hw(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if height < 64 or width < 64:
        raise argparse.ArgumentTypeError(f"the generated set needs at least 64x64 (FlowNetS), got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64, help="generated test pairs (default 64; 0 = none)")
    parser.add_argument("--size", type=parse_size, default=(384, 512), help="generated HEIGHTxWIDTH (384x512)")
    parser.add_argument("--scene-seed", type=int, default=None,
                        help="generated scenes of this seed instead of the test set's (as flowcli eval --scene-seed)")
    parser.add_argument("--motion", choices=("chairs", "wide"), default="chairs",
                        help="generated scenes' motion profile (as flowcli eval --motion; default chairs)")
    parser.add_argument("--weights", default=None,
                        help="FlowNetS weights .safetensors or 'random' (default: weights/flownets.safetensors)")
    parser.add_argument("--device", default="cpu", help="device of FlowNetS: cpu (default), cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV CPU threads (default 2)")
    parser.add_argument("--also", action="append", default=[], metavar="OPTIONS",
                        help='also run FlowNetS with these flowcli options, e.g. "--tta hflip --refine 2"; repeatable')
    parser.add_argument("--data", type=Path, default=None, help="a Flying Chairs folder: every complete triplet")
    parser.add_argument("--real-pair", type=Path, default=None,
                        help="folder with the real 50x50 Flying Chairs pair (e.g. ../shared/fixtures/flyingchairs)")
    parser.add_argument("--farneback-levels", type=int, default=FARNEBACK["levels"],
                        help=f"Farneback pyramid levels (default {FARNEBACK['levels']})")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers as JSON here")
    return parser


# ---- the pairs --------------------------------------------------------------------------------
# Each source yields (id, img1, img2, gt, valid): img (1, 3, H, W) float32 CPU tensors in [0, 1],
# gt (1, 2, H, W) float32, valid (1, H, W) bool, plus gray1/gray2 (H, W) uint8 for OpenCV.


def _gray(img, cv2):
    """(1, 3, H, W) float in [0, 1] -> (H, W) uint8 grayscale, quantised as a saved .ppm would be."""
    import torch

    rgb = img[0].mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def generated_source(count: int, size: tuple[int, int], device, **scenes) -> Iterator[tuple]:
    """`scenes`: generated_batches' motion= and seed= (default: the test set)."""
    from flowcli.inference.evaluate import generated_batches

    for sample_id, img1, img2, flow, valid in generated_batches(count, size, device, **scenes):
        yield sample_id, img1.float().cpu(), img2.float().cpu(), flow.float().cpu(), valid.cpu()


def folder_source(folder: Path) -> tuple[int, Iterator[tuple]]:
    import numpy as np
    import torch

    from flowcli.data.folders import find_samples
    from flowcli.io import read_flow, read_image_pair

    samples, _ = find_samples(folder)

    def items():
        for sample in samples:
            img1, img2 = read_image_pair(sample.img1, sample.img2)
            flow, valid = read_flow(sample.flow)
            to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float().div_(255)
            yield (sample.id, to_t(img1), to_t(img2),
                   torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None].float(),
                   torch.from_numpy(valid)[None])

    return len(samples), items()


# ---- the methods ------------------------------------------------------------------------------


def flownets_method(predictor) -> Callable:
    """(img1, img2) host tensors -> (1, 2, H, W) host flow; the Predictor upscales pairs under 64 px."""

    def run(img1, img2):
        return predictor(img1, img2).float().cpu()  # a blocking copy on CUDA: the timed call includes the GPU work

    return run


def predictor_options(text: str) -> dict:
    """'--tta hflip --no-smooth --refine 2' -> {'tta': 'hflip', 'smooth': False, 'refine': 2};
    FlowcliError for anything else. The options are flowcli.options.InferenceOptions' fields: a
    yes/no field is a --name / --no-name switch, the others take a value of their default's type."""
    from dataclasses import fields

    from flowcli.errors import FlowcliError
    from flowcli.inference.options import InferenceOptions

    defaults = InferenceOptions()
    names = [f.name for f in fields(defaults)]
    kinds = {f"--{n}": type(getattr(defaults, n)) for n in names if not isinstance(getattr(defaults, n), bool)}
    switches = {flag: (n, value) for n in names if isinstance(getattr(defaults, n), bool)
                for flag, value in ((f"--{n}", True), (f"--no-{n}", False))}
    tokens, options = text.split(), {}
    if not tokens:
        raise FlowcliError(f"--also {text!r}: expected flowcli options, e.g. '--tta hflip --refine 2'")
    while tokens:
        flag = tokens.pop(0)
        if flag in switches:
            key, value = switches[flag]
            options[key] = value
            continue
        if flag not in kinds:
            raise FlowcliError(f"--also {text!r}: {flag} is not one of {', '.join([*kinds, *switches])}")
        if not tokens:
            raise FlowcliError(f"--also {text!r}: {flag} needs a value")
        value = tokens.pop(0)
        try:
            options[flag[2:]] = kinds[flag](value)
        except ValueError:
            raise FlowcliError(f"--also {text!r}: {flag} takes a whole number, got {value!r}") from None
    return options


def opencv_methods(cv2, levels: int) -> dict[str, Callable]:
    import numpy as np

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    p = dict(FARNEBACK, levels=levels)

    def dis_calc(gray1, gray2):
        return dis.calc(gray1, gray2, None)

    def farneback(gray1, gray2):
        return cv2.calcOpticalFlowFarneback(gray1, gray2, None, p["pyr_scale"], p["levels"], p["winsize"],
                                            p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"])

    def zero(gray1, gray2):
        return np.zeros((*gray1.shape, 2), np.float32)

    return {"DIS (medium)": dis_calc, "Farneback": farneback, "zero flow": zero}


class Tally:
    """flowcli's EpeTally (EPE, 1/3/5 px, EPE by speed band and frame part over every valid pixel)
    plus call times."""

    def __init__(self):
        from flowcli.metrics import EpeTally

        self.metrics, self.times = EpeTally(), []

    def add(self, pred, gt, valid, seconds: float | None) -> None:
        self.metrics.add(pred, gt, valid)
        if seconds is not None:
            self.times.append(seconds)

    def result(self) -> dict:
        times = sorted(self.times)
        return {**self.metrics.result(),
                "ms_per_image": 1000 * sum(times) / len(times) if times else None,
                "median_ms_per_image": 1000 * times[len(times) // 2] if times else None}


CHUNK = 16  # pairs held at once; each method runs on all of them back to back


def run_source(items: Iterator[tuple], networks: dict[str, Callable], classical: dict[str, Callable], cv2,
               on_pair: Callable[[int], None] | None = None) -> dict:
    """networks: FlowNetS variants (name -> flownets_method) fed float tensors; classical: OpenCV on grey.

    Methods take turns by chunks of CHUNK pairs, not pair by pair: interleaving twelve FlowNetS
    variants and OpenCV on every pair made each FlowNetS call ~1.5x slower than in `flowcli eval`
    (caches and thread pools went cold between calls); by chunks each runs warm, as it would alone.
    """
    tallies = {name: Tally() for name in [*networks, *classical]}
    pairs, shapes, chunk = 0, set(), []
    for index, (_, img1, img2, gt, valid) in enumerate(items):
        gray1, gray2 = _gray(img1, cv2), _gray(img2, cv2)
        shapes.add(tuple(gt.shape[-2:]))
        if index == 0:  # warm-up: allocations, lazy init, oneDNN primitive creation
            for fn in networks.values():
                fn(img1, img2)
            for fn in classical.values():
                fn(gray1, gray2)
        chunk.append((img1, img2, gray1, gray2, gt, valid))
        if len(chunk) == CHUNK:
            _run_chunk(chunk, networks, classical, tallies)
            chunk = []
        pairs += 1
        if on_pair:
            on_pair(pairs)
    _run_chunk(chunk, networks, classical, tallies)
    return {"pairs": pairs, "sizes": sorted(f"{h}x{w}" for h, w in shapes),
            "methods": {name: tally.result() for name, tally in tallies.items()}}


def _run_chunk(chunk: list[tuple], networks: dict[str, Callable], classical: dict[str, Callable],
               tallies: dict[str, "Tally"]) -> None:
    import torch

    for name, fn in networks.items():
        for img1, img2, _, _, gt, valid in chunk:
            start = time.perf_counter()
            pred = fn(img1, img2)
            tallies[name].add(pred, gt, valid, time.perf_counter() - start)
    for name, fn in classical.items():
        for _, _, gray1, gray2, gt, valid in chunk:
            start = time.perf_counter()
            flow = fn(gray1, gray2)
            seconds = time.perf_counter() - start
            pred = torch.from_numpy(flow).permute(2, 0, 1)[None]
            tallies[name].add(pred, gt, valid, None if name == "zero flow" else seconds)


# ---- output -----------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def markdown(report: dict) -> str:
    lines = [f"# FlowNetS vs classical optical flow ({report['date']})", "", "```", report["command"], "```", "",
             f"- CPU: {report['cpu']} ({os.cpu_count()} logical CPUs), threads {report['threads']} "
             "(torch.set_num_threads and cv2.setNumThreads)",
             f"- torch {report['torch']}, OpenCV {report['opencv']}, Python {platform.python_version()}",
             f"- FlowNetS: weights {report['weights']}, device {report['device']}, fp32, flowcli fast path "
             "(load_predictor); pairs under 64 px: bilinear upscale by k, flow resized back and divided by k",
             "- DIS: preset MEDIUM; Farneback: " + ", ".join(f"{k} {v}" for k, v in report["farneback"].items()),
             "- classical methods on grayscale uint8 frames (round(x * 255)), at native size",
             "- EPE and accuracies over all valid pixels of all pairs; ms/img: mean of the method call alone, "
             f"one warm-up pair excluded; methods take turns by chunks of {CHUNK} pairs", ""]
    for source in report["sources"]:
        pairs = f"{source['pairs']} pair{'s' if source['pairs'] != 1 else ''}"
        lines += [f"## {source['name']}: {pairs}, {', '.join(source['sizes'])}", "",
                  "| method | EPE | <1px | <3px | <5px | "
                  + " | ".join(f"EPE {b}" for b in (*SPEED_BANDS, *FRAME_PARTS)) + " | ms/img |",
                  "|---" * (6 + len(SPEED_BANDS) + len(FRAME_PARTS)) + "|"]
        for name, r in source["methods"].items():
            ms = "-" if r["ms_per_image"] is None else f"{r['ms_per_image']:.2f}"
            bands = " | ".join("-" if r[b] is None else f"{r[b]:.3f}" for b in (*SPEED_BANDS, *FRAME_PARTS))
            lines.append(f"| {name} | {r['epe']:.3f} | {_pct(r['1px'])} | {_pct(r['3px'])} | {_pct(r['5px'])} "
                         f"| {bands} | {ms} |")
        lines.append("")
    return "\n".join(lines)


def import_opencv():
    """cv2, or None after one line on stderr saying how to install it."""
    try:
        import cv2
    except ImportError:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return None
    return cv2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cv2 = import_opencv()
    if cv2 is None:
        return 1
    import torch

    from flowcli.device import cpu_model, resolve_device
    from flowcli.errors import FlowcliError
    from flowcli.inference.evaluate import TEST_SEED
    from flowcli.inference.engine import load_predictor

    if args.count < 0 or args.threads < 1 or args.farneback_levels < 1:
        print("error: --count must be >= 0, --threads and --farneback-levels >= 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    command = command_line(__file__, argv)
    try:
        device = resolve_device(args.device)
        networks = {"FlowNetS": flownets_method(load_predictor(args.weights, device=str(device)))}
        for text in args.also:
            options = predictor_options(text)
            predictor = load_predictor(args.weights, device=str(device), **options)
            networks[f"FlowNetS {text.strip()}"] = flownets_method(predictor)
        classical = opencv_methods(cv2, args.farneback_levels)
        sources = []
        if args.count:
            seed = TEST_SEED if args.scene_seed is None else args.scene_seed
            name = "generated test set" if seed == TEST_SEED else "generated scenes"
            profile = "" if args.motion == "chairs" else f", {args.motion} motion"
            sources.append((f"{name} (seed {seed}{profile})", args.count,
                            generated_source(args.count, args.size, device, motion=args.motion, seed=seed)))
        for name, folder in (("Flying Chairs folder", args.data), ("real Flying Chairs pair", args.real_pair)):
            if folder is not None:
                total, items = folder_source(folder)
                sources.append((f"{name} {folder}", total, items))
        if not sources:
            print("error: nothing to evaluate (--count 0 and neither --data nor --real-pair)", file=sys.stderr)
            return 1
        results = []
        for name, total, items in sources:
            def progress(done: int, name=name, total=total) -> None:
                print(f"\r{name}: {done}/{total}", end="", file=sys.stderr, flush=True)

            result = run_source(items, networks, classical, cv2, on_pair=progress)
            print(file=sys.stderr)
            results.append({"name": name, **result})
    except FlowcliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "device": str(device),
        "weights": args.weights if args.weights is not None else "weights/flownets.safetensors (shipped)",
        "farneback": dict(FARNEBACK, levels=args.farneback_levels),
        "sources": results,
    }
    text = markdown(report)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
