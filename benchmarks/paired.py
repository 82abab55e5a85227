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


@dataclass(frozen=True)
class Evaluation:
    ids: list[str]
    epe: np.ndarray  # per pair
    valid: np.ndarray  # valid pixels per pair: the weights of the pixel-weighted mean
    source: str | None  # the set: generated ids are gen00000.. whatever the seed, size or motion
    options: dict | None


def load(path: Path) -> Evaluation:
    """Pair ids, per-pair EPE and valid pixels of an eval JSON (`flowcli eval --json`)."""
    try:
        result = json.loads(path.read_text())
        samples = result["samples"]
        return Evaluation([s["id"] for s in samples], np.array([s["epe"] for s in samples], float),
                          np.array([s["valid_pixels"] for s in samples], float), result.get("source"),
                          result.get("options"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not an eval JSON with per-pair samples ({type(exc).__name__}: {exc})") from None


def weighted_mean(epe: np.ndarray, weight: np.ndarray, rows=slice(None)) -> np.ndarray:
    """Pixel-weighted EPE, as `flowcli eval` reports it; a pair without valid pixels (NaN EPE) weighs 0."""
    return (np.where(weight > 0, epe, 0.0)[rows] * weight[rows]).sum(-1) / weight[rows].sum(-1)


def compare(base: tuple[np.ndarray, np.ndarray], others: dict[str, np.ndarray], *, resamples: int,
            seed: int = 0) -> list[Comparison]:
    """Each of `others` (per-pair EPE on the baseline's pairs, in its order) against the baseline."""
    epe, weight = base
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(epe), size=(resamples, len(epe)))  # the same resamples for every file

    def mean(values: np.ndarray, rows=slice(None)) -> np.ndarray:
        return weighted_mean(values, weight, rows)

    with np.errstate(invalid="ignore", divide="ignore"):
        base_mean, base_boot = mean(epe), mean(epe, draws)
    rows = []
    for name, other in others.items():
        change = mean(other) / base_mean - 1
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample of only pixel-less pairs: NaN
            boot = mean(other, draws) / base_boot - 1
        low, high = np.nanquantile(boot, [0.025, 0.975])
        rows.append(Comparison(name, float(mean(other)), float(change), float(low), float(high),
                               int((other < epe).sum()), int((other > epe).sum())))
    return rows


def main(argv: list[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="the baseline's eval JSON")
    parser.add_argument("others", type=Path, nargs="+", help="eval JSONs of the same pairs to compare with it")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    args = parser.parse_args(argv)
    base = load(args.base)
    ids, epe, weight = base.ids, base.epe, base.valid
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{args.base}: a pair id appears twice")
    others, notes = {}, []
    for path in args.others:
        other = load(path)
        if sorted(other.ids) != sorted(ids):
            raise SystemExit(f"{path}: not the pairs of {args.base} ({len(other.ids)} against {len(ids)} pairs, "
                             "or other ids): compare evals of the same set")
        if other.source != base.source:
            raise SystemExit(f"{path}: another set ({other.source}) than {args.base} ({base.source}): "
                             "compare evals of the same set")
        position = {pair: i for i, pair in enumerate(other.ids)}
        order = [position[pair] for pair in ids]
        if not np.array_equal(other.valid[order], weight):
            raise SystemExit(f"{path}: the same pair ids with other valid pixels than {args.base}: another set")
        if other.options != base.options:
            notes.append(f"note: {path} ran with other options ({other.options}) than the baseline ({base.options})")
        others[str(path)] = other.epe[order]
    rows = compare((epe, weight), others, resamples=args.resamples)
    print(command_line(__file__, argv))
    print(f"\n{len(ids)} pairs; baseline {args.base}: EPE {weighted_mean(epe, weight):.3f}\n")
    print("| file | EPE | change | 95 % interval | pairs better / worse |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.name} | {row.epe:.3f} | {row.change:+.1%} | {row.low:+.1%} .. {row.high:+.1%} | "
              f"{row.better} / {row.worse} |")
    for note in notes:
        print(note)
    return rows


if __name__ == "__main__":
    main()
