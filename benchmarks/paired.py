"""Is one weights file really better than another on a set of pairs? A paired comparison of eval JSONs.

    flowcli eval --weights weights/flownets.safetensors --scene-seed 99 --json base.json
    flowcli eval --weights runs/x/last.safetensors --scene-seed 99 --json new.json
    python benchmarks/paired.py base.json new.json [more.json ...] [--resamples 10000]

Why: the proxies a new file must win on hold 64 scenes each, and a few hard scenes carry much of
an EPE. Both files are measured on the same pairs, so the question is the distribution of the
per-pair differences: the table gives each file's EPE (pixel-weighted, as `flowcli eval` reports it),
its change against the first file, a 95 % bootstrap interval of that change (pairs resampled with
replacement, the same resamples for every file) and how many pairs got better or worse.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from report import command_line


@dataclass(frozen=True)
class Comparison:
    name: str
    epe: float
    change: float  # relative to the baseline's EPE: -0.01 is 1 % better
    low: float  # 95 % bootstrap interval of `change`
    high: float
    better: int  # pairs whose EPE went down
    worse: int


def load(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pair ids, per-pair EPE and valid pixels of an eval JSON (`flowcli eval --json`)."""
    try:
        result = json.loads(path.read_text())
        samples = result["samples"]
        ids = [s["id"] for s in samples]
        return ids, np.array([s["epe"] for s in samples], float), np.array([s["valid_pixels"] for s in samples], float)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not an eval JSON with per-pair samples ({type(exc).__name__}: {exc})") from None


def compare(base: tuple[np.ndarray, np.ndarray], others: dict[str, np.ndarray], *, resamples: int,
            seed: int = 0) -> list[Comparison]:
    """Each of `others` (per-pair EPE on the baseline's pairs, in its order) against the baseline."""
    epe, weight = base
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(epe), size=(resamples, len(epe)))  # the same resamples for every file

    def mean(values: np.ndarray, rows=slice(None)) -> np.ndarray:
        return (values[rows] * weight[rows]).sum(-1) / weight[rows].sum(-1)

    base_mean, base_boot = mean(epe), mean(epe, draws)
    rows = []
    for name, other in others.items():
        change = mean(other) / base_mean - 1
        boot = mean(other, draws) / base_boot - 1
        low, high = np.quantile(boot, [0.025, 0.975])
        rows.append(Comparison(name, float(mean(other)), float(change), float(low), float(high),
                               int((other < epe).sum()), int((other > epe).sum())))
    return rows


def main(argv: list[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="the baseline's eval JSON")
    parser.add_argument("others", type=Path, nargs="+", help="eval JSONs of the same pairs to compare with it")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    args = parser.parse_args(argv)
    ids, epe, weight = load(args.base)
    others = {}
    for path in args.others:
        other_ids, other, _ = load(path)
        if sorted(other_ids) != sorted(ids):
            raise SystemExit(f"{path}: not the pairs of {args.base} ({len(other_ids)} against {len(ids)} pairs, "
                             "or other ids): compare evals of the same set")
        order = {pair: i for i, pair in enumerate(other_ids)}
        others[str(path)] = other[[order[pair] for pair in ids]]
    rows = compare((epe, weight), others, resamples=args.resamples)
    print(command_line(__file__, argv))
    print(f"\n{len(ids)} pairs; baseline {args.base}: EPE {(epe * weight).sum() / weight.sum():.3f}\n")
    print("| file | EPE | change | 95 % interval | pairs better / worse |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.name} | {row.epe:.3f} | {row.change:+.1%} | {row.low:+.1%} .. {row.high:+.1%} | "
              f"{row.better} / {row.worse} |")
    return rows


if __name__ == "__main__":
    main()
