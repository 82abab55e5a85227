"""The reference's table from one call: EPE on the train part and the test part of its 80/20 split,
and time per image on the test part, beside the figures it reported (8.04 / 7.0 / 0.0107 s)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..errors import DataError
from ..results import JsonResult
from .evaluate import evaluate
from .options import InferenceOptions

# What the reference reported: FlowNetSimple, Adam, EPE loss, batch 8, 20 epochs, 1485 Chairs pairs.
REFERENCE_FIGURES = {"train_epe": 8.04, "test_epe": 7.0, "s_per_image": 0.0107}


@dataclass(frozen=True)
class ReferenceReport(JsonResult):
    """EPE of the reference split's train part (the reference's "train-val" figure) and test part,
    and the time per image on the test part, with the reference's own figures beside them."""

    data: str
    weights: str
    device: str
    dtype: str
    options: InferenceOptions
    train_pairs: int
    test_pairs: int
    train_epe: float
    test_epe: float
    s_per_image: float
    reference: dict[str, float]


def reference_report(data_dir: str | os.PathLike, *, weights=None, device: str = "auto", dtype: str = "fp32",
                     options: InferenceOptions = InferenceOptions(), strict: bool = False,
                     on_progress: Callable[[str, int, int], None] | None = None) -> ReferenceReport:
    """Evaluate `weights` on both parts of the reference split of `data_dir` (`on_progress(part, done,
    total)`). The reference reported its network alone: options refine=0, smooth=False compare like
    with like."""
    if data_dir is None:
        raise DataError("the reference's table needs its data: give the Flying Chairs folder")
    results = {}
    for part in ("train", "test"):
        progress = (lambda done, total, part=part: on_progress(part, done, total)) if on_progress else None
        results[part] = evaluate(data_dir, split="reference", part=part, weights=weights, device=device,
                                 dtype=dtype, options=options, strict=strict, on_progress=progress)
    train, test = results["train"], results["test"]
    return ReferenceReport(
        data=str(data_dir), weights=test.weights, device=test.device, dtype=dtype, options=options,
        train_pairs=train.pairs, test_pairs=test.pairs, train_epe=train.epe, test_epe=test.epe,
        s_per_image=test.ms_per_image / 1000, reference=dict(REFERENCE_FIGURES))
