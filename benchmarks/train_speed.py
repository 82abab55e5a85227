"""Training throughput, variants alternated: img/s and the data pipeline's share of step time.

    python benchmarks/train_speed.py --also=--compile                        # stage 5's recipe, plain vs compiled
    python benchmarks/train_speed.py --rounds 2 --also "--workers 1" --epochs 3
    python benchmarks/train_speed.py --base "--preset quick --device cpu" --epochs 1 --steps 2
    python benchmarks/train_speed.py --also "FLOWCLI_KEEP_FREED_MEMORY=0"    # NAME=VALUE: the run's environment

Why: absolute times on a shared 2-core machine drift by 10-20 % within minutes, so a variant is
only compared with the baseline run right beside it: every round runs the baseline, then each
variant, each as a fresh `flowcli train` for a few short epochs. The first epoch pays for warm-up
(and compiling, with --compile), so the table reports epochs 2 onwards apart from it. Each run's
log.jsonl is where the numbers come from: `images_per_s` and `data_share` per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

from report import command_line

# Stage 5 of the shipped weights (weights/README.md), the recipe the CPU throughput target names.
BASE = "--preset gpu --init weights/flownets.safetensors --device cpu --workers 0 --lr 1e-4 --freeze-bn"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE, help="flowcli train options of the baseline, after any NAME=VALUE "
                                                     f"environment words (default: {BASE!r})")
    parser.add_argument("--also", action="append", default=[], metavar="OPTIONS",
                        help="a variant: options added to the baseline's, after any NAME=VALUE environment words "
                             "(repeatable; one starting with -- as --also=--compile)")
    parser.add_argument("--rounds", type=int, default=1, help="times each run is repeated, alternated (default 1)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--steps", type=int, default=12, help="steps per epoch (default 12)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's epochs as JSON here")
    return parser


def split_environment(options: str) -> tuple[dict[str, str], list[str]]:
    """Leading NAME=VALUE words of `options` (environment variables, as in a shell), and the rest."""
    words, env = shlex.split(options), {}
    while words and "=" in words[0] and words[0].split("=")[0].isidentifier():
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def join_environment(env: dict[str, str], words: list[str]) -> str:
    """split_environment's inverse: one shell-quoted line."""
    return shlex.join([f"{name}={value}" for name, value in env.items()] + words)


def with_variant(base: str, extra: str) -> str:
    """The baseline's options with a variant's: environment words first (the variant's win), then the
    baseline's options and the variant's after them (a repeated option: the variant's wins)."""
    base_env, base_words = split_environment(base)
    env, words = split_environment(extra)
    return join_environment({**base_env, **env}, base_words + words)


def run_once(options: str, epochs: int, steps: int, folder: Path) -> list[dict]:
    """One fresh training run of `options` (ENV=VALUE ... --flowcli-options); its per-epoch log records."""
    env, words = split_environment(options)
    cmd = [sys.executable, "-m", "flowcli", "train", *words, "--epochs", str(epochs),
           "--steps-per-epoch", str(steps), "--output", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def summary(runs: list[list[dict]]) -> dict:
    """Per variant: the first epoch's img/s and, over epochs 2.., each run's mean img/s and data share."""
    later = [run[1:] or run for run in runs]
    return {"first_epoch_img_s": [round(run[0]["images_per_s"], 1) for run in runs],
            "img_s": [round(mean(e["images_per_s"] for e in run), 1) for run in later],
            "data_share": [round(mean(e["data_share"] for e in run), 3) for run in later]}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    variants = {"baseline": args.base, **{extra: with_variant(args.base, extra) for extra in args.also}}
    runs: dict[str, list[list[dict]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="train_speed_") as scratch:
        for round_ in range(args.rounds):
            for index, (name, options) in enumerate(variants.items()):
                folder = Path(scratch) / f"r{round_}_{index}"
                runs[name].append(run_once(options, args.epochs, args.steps, folder))
                print(f"round {round_ + 1}, {name}: done", file=sys.stderr)
    results = {name: summary(found) for name, found in runs.items()}
    print(command_line(__file__, argv))
    env, words = split_environment(args.base)
    print(f"\n{join_environment(env, ['flowcli', 'train', *words])} --epochs {args.epochs} --steps-per-epoch {args.steps}, "
          f"{args.rounds} round(s), alternated\n")
    print("| variant | img/s, epochs 2.. (each round) | data share | first epoch img/s |")
    print("|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {' / '.join(map(str, row['img_s']))} | "
              f"{' / '.join(f'{s:.0%}' for s in row['data_share'])} | {' / '.join(map(str, row['first_epoch_img_s']))} |")
    if args.json:
        args.json.write_text(json.dumps({"command": command_line(__file__, argv), "results": results,
                                         "runs": runs}, indent=1))
    return results


if __name__ == "__main__":
    main()
