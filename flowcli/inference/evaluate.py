"""Evaluation: EPE (the reference's mean_epe), 1/3/5 px accuracy, EPE by speed and in/out of frame,
and the model's time per image.

On a folder it evaluates one part of a split (by default the test part of the split that trained
the weights, when they sit in a run folder with split.json); without a folder, a fixed, seeded
generated test set that training never sees.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..checkpoint import is_named, weights_label
from ..data.splits import EVERY_PAIR, PARTS, SCHEMES
from ..errors import DataError
from ..metrics import FRAME_PARTS, SPEED_BANDS, THRESHOLDS, EpeTally, OcclusionTally
from ..results import JsonResult
from .occlusion import both_directions, predict_checked
from .options import InferenceOptions

TEST_SEED = 2_024_113  # generated test scenes: neither training nor validation seeds reach it


@dataclass(frozen=True)
class SampleEpe:
    id: str
    epe: float
    valid_pixels: int
    fl_all: float | None = None  # KITTI's outlier share (EPE > 3 px and > 5 % of the true motion)
    unknown_pixels: int = 0  # no ground truth there (KITTI's invalid, .flo > 1e9): masked
    scene: str | None = None  # Sintel's scene


@dataclass(frozen=True)
class SceneEpe:
    """One Sintel scene's pairs, pixel-weighted like the whole."""

    scene: str
    pairs: int
    epe: float
    fl_all: float
    valid_pixels: int


@dataclass(frozen=True)
class EvalResult(JsonResult):
    """What `evaluate` measured. EPEs in pixels over valid pixels; shares in [0, 1]; a speed band or
    frame part without pixels is None."""

    source: str
    weights: str
    device: str
    dtype: str
    options: InferenceOptions
    pairs: int
    epe: float
    within: dict[str, float]  # "1px" -> share of pixels with EPE below 1 px, ...
    epe_by_speed: dict[str, float | None]  # "s0-10", "s10-40", "s40+" (true speed in px)
    epe_by_frame: dict[str, float | None]  # "in-frame", "out-of-frame" (does the true match leave image 2?)
    out_of_frame_share: float
    valid_pixels: int
    invalid_pixels: int  # unknown ground truth (> 1e9 in .flo), masked
    ms_per_image: float
    median_ms_per_image: float
    incomplete_triplets: tuple[str, ...]
    samples: tuple[SampleEpe, ...]
    fl_all: float = float("nan")  # KITTI's Fl-all over valid pixels: EPE > 3 px and > 5 % of the true motion
    layout: str = "generated"  # the dataset layout evaluated (data/layouts), or the generated test set
    scenes: tuple[SceneEpe, ...] = ()  # per scene (Sintel), in the order met
    # where ground-truth occlusion is known (<id>_occ.png, generated pairs): EPE over non-occluded
    # pixels, the occluded share, and with fb_check the mask's precision / recall / F1 (metrics.OcclusionTally)
    epe_noc: float | None = None
    occluded_share: float | None = None
    occlusion_check: dict[str, float | None] | None = None
    fb_check: bool = False
    scene_seed: int | None = None  # the generated scenes' seed and motion profile; None for a folder
    motion: str | None = None


def evaluate(
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "auto",
    part: str = "test",
    seed: int = 0,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "fp32",
    options: InferenceOptions = InferenceOptions(),
    count: int = 64,
    size: tuple[int, int] = (384, 512),
    warmup: int = 2,
    strict: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    layout: str = "auto",
    sintel_pass: str = "clean",
    fb_check: bool = False,
    motion: str = "chairs",
    scene_seed: int = TEST_SEED,
) -> EvalResult:
    """Evaluate weights on `part` of a folder's `split` (split="all": every pair), or on `count`
    generated test pairs of `size` (H, W) when data_dir is None (the generator's `motion` profile,
    scenes of `scene_seed`; the default is the test set, which no training or validation draws).
    The folder (or list file) is in any dataset layout of data/layouts, detected unless `layout`
    names one; `sintel_pass` picks Sintel's.
    fb_check=True also predicts the backward flow in the same batch (timed with it) and scores the
    forward-backward check's mask."""
    from .engine import load_predictor

    if split not in (*SCHEMES, EVERY_PAIR):
        raise DataError(f"split={split!r} is not a split: choose one of {', '.join((*SCHEMES, EVERY_PAIR))}")
    if part not in PARTS:
        raise DataError(f"part={part!r} is not a part of a split: choose one of {', '.join(PARTS)}")
    if count < 1:
        raise DataError(f"count={count}: evaluate at least one pair")
    asked = [f"motion={motion!r}"] * (motion != "chairs") + [f"scene_seed={scene_seed}"] * (scene_seed != TEST_SEED)
    if data_dir is not None and asked:
        raise DataError(f"{data_dir}: {' and '.join(asked)} choose generated test scenes; a folder has its own")
    predictor = load_predictor(weights, device=device, dtype=dtype, options=options)
    incomplete: list[str] = []
    scene_of: dict[str, str | None] = {}
    found_layout = "generated"
    if data_dir is not None:
        samples, incomplete, found_layout = folder_pairs(Path(data_dir), split=split, part=part, seed=seed,
                                                         weights=weights, strict=strict, layout=layout,
                                                         sintel_pass=sintel_pass, with_layout=True)
        scene_of = {s.id: s.scene for s in samples}
        total, batches = len(samples), folder_batches(samples, with_occlusion=True)
        what = "every pair" if split == EVERY_PAIR else f"{split} split, {part}"
        if found_layout == "sintel":
            what = f"{sintel_pass} pass, {what}"
        source = f"{data_dir} ({what})" if found_layout == "chairs" else f"{data_dir} ({found_layout}, {what})"
    else:
        total, batches = count, generated_batches(count, size, predictor.device, with_occlusion=True,
                                                  motion=motion, seed=scene_seed)
        profile = "" if motion == "chairs" else f", {motion} motion"
        source = f"generated test set (seed {scene_seed}{profile}, {count} pairs, {size[0]}x{size[1]})"

    samples_out, times, tally, invalid = [], [], EpeTally(), 0
    scene_tallies: dict[str, EpeTally] = {}
    occlusion, predicted = OcclusionTally(), None
    captured: set[tuple[int, ...]] = set()
    for index, (sample_id, img1, img2, flow, valid, truth) in enumerate(batches):
        new_graph = predictor.cuda_graphs and tuple(img1.shape) not in captured
        captured.add(tuple(img1.shape))
        # the first calls pay for allocation; with CUDA graphs, every new size's first for its capture
        if index < warmup or new_graph:
            predictor(*(both_directions(img1, img2) if fb_check else (img1, img2)))
        if fb_check:
            seconds, (pred, predicted) = _timed(lambda a, b: predict_checked(predictor, a, b), img1, img2, predictor.device)
        else:
            seconds, pred = _timed(predictor, img1, img2)
        times.append(seconds)
        pred, flow, valid = pred.float().cpu(), flow.float().cpu(), valid.cpu()  # once, for every tally
        if truth is not None:
            occlusion.add(pred, flow, truth.cpu(), valid, None if predicted is None else predicted.cpu())
        one = EpeTally()  # the pair's own, merged into the set's and its scene's
        err = one.add(pred, flow, valid)
        tally.merge(one)
        unknown = int((~valid).sum())
        invalid += unknown
        scene = scene_of.get(sample_id)
        if scene is not None:
            scene_tallies.setdefault(scene, EpeTally()).merge(one)
        samples_out.append(SampleEpe(sample_id, err.mean().item() if err.numel() else float("nan"), err.numel(),
                                     fl_all=one.result()["fl_all"] if one.valid else None,
                                     unknown_pixels=unknown, scene=scene))
        if on_progress:
            on_progress(index + 1, total)
    if tally.valid == 0:
        raise DataError("no pixel with valid ground truth in the evaluated pairs")
    summary = tally.result()
    times.sort()
    return EvalResult(
        source=source, weights=weights_label(weights),
        device=str(predictor.device), dtype=dtype, options=options, pairs=len(samples_out),
        epe=summary["epe"], within={f"{t:g}px": summary[f"{t:g}px"] for t in THRESHOLDS},
        epe_by_speed={band: summary[band] for band in SPEED_BANDS},
        epe_by_frame={part_: summary[part_] for part_ in FRAME_PARTS},
        out_of_frame_share=summary["out_of_frame_share"], valid_pixels=summary["valid_pixels"],
        invalid_pixels=invalid, ms_per_image=1000 * sum(times) / len(times),
        median_ms_per_image=1000 * times[len(times) // 2], incomplete_triplets=tuple(incomplete),
        samples=tuple(samples_out), fl_all=summary["fl_all"], layout=found_layout,
        scenes=_scene_rows(scene_tallies, samples_out),
        scene_seed=None if data_dir is not None else scene_seed, motion=None if data_dir is not None else motion,
        **_occlusion_fields(occlusion, fb_check))


def _scene_rows(tallies: dict[str, EpeTally], samples: list[SampleEpe]) -> tuple[SceneEpe, ...]:
    """Each scene's row, in the order met; its pair count from the samples."""
    pairs = Counter(s.scene for s in samples)
    rows = []
    for name, tally in tallies.items():
        result = tally.result()
        rows.append(SceneEpe(name, pairs[name], result["epe"], result["fl_all"], tally.valid))
    return tuple(rows)


def _occlusion_fields(occlusion: OcclusionTally, fb_check: bool) -> dict:
    summary = occlusion.result()
    check = {key: summary.get(key) for key in ("precision", "recall", "f1", "predicted_share")} if occlusion.checked else None
    return {"epe_noc": summary["epe_noc"], "occluded_share": summary["occluded_share"],
            "occlusion_check": check, "fb_check": fb_check}


def _timed(predictor, img1: torch.Tensor, img2: torch.Tensor, device=None) -> tuple[float, torch.Tensor]:
    """One call's wall time, CUDA synchronised on both ends."""
    device = device or predictor.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    pred = predictor(img1, img2)
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, pred


def folder_pairs(data_dir: Path, *, split: str, part: str, seed: int, weights, strict: bool = False,
                 layout: str = "auto", sintel_pass: str = "clean", with_layout: bool = False):
    """The samples of one part of a folder's split (reusing a run folder's split.json when split is
    auto and the weights sit in one that was trained on this folder), and the folder's incomplete triplets (with_layout: and the
    layout found, as a third item)."""
    from ..data.layouts import find_pairs
    from ..data.splits import load_split, split_samples

    found = find_pairs(data_dir, layout=layout, sintel_pass=sintel_pass, strict=strict)
    samples, incomplete = found.samples, found.incomplete
    extra = (found.layout,) if with_layout else ()
    if split == EVERY_PAIR:
        return (samples, incomplete, *extra)
    # a run folder's weights file, not a shipped network (whose name is no path)
    run_split = Path(weights).parent / "split.json" if weights is not None and not is_named(weights) else None
    parts = None  # another dataset's split.json gives None: this folder's own split applies
    if split == "auto" and run_split is not None and run_split.is_file():
        parts = load_split(run_split, samples, data_dir)
    if parts is None:
        parts = split_samples(samples, split=split, seed=seed, folder=data_dir)
    if not parts.get(part):
        raise DataError(f"{data_dir}: the {split} split of its {len(samples)} pairs has no {part} part; "
                        f"split={EVERY_PAIR} evaluates every pair")
    return (parts[part], incomplete, *extra)


def folder_batches(samples, *, with_occlusion: bool = False) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(id, img1, img2, flow, valid) batches of one pair; with_occlusion=True adds the ground-truth
    occlusion (1, H, W) from `<id>_occ.png`, or None where the folder has none."""
    from ..data.dataset import FlowDataset, read_occlusion

    dataset = FlowDataset(samples)
    for i in range(len(dataset)):
        item = dataset[i]
        batch = item["id"], item["img1"][None], item["img2"][None], item["flow"][None], item["valid"][None]
        if not with_occlusion:
            yield batch
            continue
        truth = read_occlusion(dataset.samples[i], tuple(item["flow"].shape[-2:]))
        yield *batch, None if truth is None else truth[None]


def generated_batches(count: int, size: tuple[int, int], device, *, with_occlusion: bool = False,
                      motion: str = "chairs", seed: int = TEST_SEED):
    """(id, img1, img2, flow, valid) of the seeded generated test set; with_occlusion=True adds the
    true occlusion (flowcli.data.occlusion). Another motion profile or seed gives other scenes."""
    from ..data.scenes import SynthConfig
    from ..data.synth import SceneGenerator

    from ..data.occlusion import true_occlusion

    try:
        config = SynthConfig(height=size[0], width=size[1]).with_motion(motion)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    generator = SceneGenerator(config, seed=seed, device=device)
    for i in range(count):
        scene = generator.render(1)  # what batch(1) returns, plus the layers that give the true occlusion
        batch = f"gen{i:05d}", scene.img1, scene.img2, scene.flow, torch.ones_like(scene.flow[:, 0], dtype=torch.bool)
        yield (*batch, true_occlusion(scene.flow, scene.layers1, scene.layers2)) if with_occlusion else batch
