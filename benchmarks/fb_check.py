"""What `--fb-check` costs and how good its mask is: plain prediction and prediction with the
forward-backward check (one batch of two, then the check) timed by turns on the same generated pairs
in one process, with the mask's precision / recall / F1 and the EPE over non-occluded pixels.

    python benchmarks/fb_check.py --count 16
    python benchmarks/fb_check.py --count 16 --passes 2 --tta hflip
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from flowcli.inference.engine import load_predictor
from flowcli.inference.evaluate import TEST_SEED, generated_batches
from flowcli.inference.occlusion import predict_checked
from flowcli.inference.options import InferenceOptions
from flowcli.metrics import OcclusionTally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--size", default="384x512")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tta", default="none")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--refine", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    options = InferenceOptions(tta=args.tta, passes=args.passes, refine=args.refine)
    predictor = load_predictor(args.weights, device=args.device, options=options)
    sync = (lambda: torch.cuda.synchronize(predictor.device)) if predictor.device.type == "cuda" else (lambda: None)
    plain, checked, tally = [], [], OcclusionTally()
    kept = {True: [0.0, 0], False: [0.0, 0]}  # EPE over the pixels the check marks / keeps
    for index, (_, img1, img2, flow, valid, truth) in enumerate(
            generated_batches(args.count + 1, size, predictor.device, with_occlusion=True)):
        for times, call in ((plain, lambda: predictor(img1, img2)), (checked, lambda: predict_checked(predictor, img1, img2))):
            sync()
            start = time.perf_counter()
            out = call()
            sync()
            if index:  # the first pair warms both paths up
                times.append(time.perf_counter() - start)
        if index:
            pred, occluded = out
            tally.add(pred.cpu(), flow.cpu(), truth.cpu(), valid.cpu(), occluded.cpu())
            error = torch.linalg.vector_norm(pred.cpu() - flow.cpu(), dim=1)
            for marked in (True, False):
                where = occluded.cpu() == marked
                kept[marked][0] += error[where].sum().item()
                kept[marked][1] += int(where.sum())
    plain.sort()
    checked.sort()
    result = tally.result()
    ms = lambda t: 1000 * t[len(t) // 2]  # noqa: E731
    print(f"# {args.count} generated pairs (seed {TEST_SEED}) {args.size}, {predictor.device} fp32, "
          f"{args.threads} thread(s), options: {options.label() or 'defaults'}; {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}")
    print("| plain ms (median) | --fb-check ms (median) | ratio | mask precision | recall | F1 | truly occluded | marked | EPE noc | EPE kept / marked |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {ms(plain):.1f} | {ms(checked):.1f} | {ms(checked) / ms(plain):.2f}x | {result['precision']:.3f} | "
          f"{result['recall']:.3f} | {result['f1']:.3f} | {100 * result['occluded_share']:.1f}% | "
          f"{100 * result['predicted_share']:.1f}% | {result['epe_noc']:.3f} | "
          f"{kept[False][0] / max(kept[False][1], 1):.3f} / {kept[True][0] / max(kept[True][1], 1):.3f} |")


if __name__ == "__main__":
    main()
