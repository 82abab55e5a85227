"""Visualisation API: a flow field colour-coded, or a comparison panel for a pair (predicted here or
given), with its EPE when ground truth is given. Each returns the image and writes it when asked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FlowcliError, ImageError, OutputError
from ..io import check_same_size, check_writable, read_flow, read_image, split_valid, write_image
from ..results import JsonResult
from ..viz import check_max_flow, flow_to_color, panel
from .options import InferenceOptions

ImageLike = np.ndarray | str | os.PathLike
FlowLike = np.ndarray | str | os.PathLike  # an (H, W, 2) array or a .flo file


@dataclass(frozen=True, eq=False)
class Drawing(JsonResult):
    """An (H, W, 3) uint8 image; `epe`: mean end-point error of the prediction against the ground
    truth (panels with ground truth only); `output`: where it was written, if anywhere."""

    image: np.ndarray
    epe: float | None = None
    output: str | None = None

    def as_dict(self) -> dict:
        height, width = self.image.shape[:2]
        return {"output": self.output, "height": height, "width": width, "epe": self.epe}


def draw_flow(flow: FlowLike, *, max_flow: float | None = None, output: str | os.PathLike | None = None) -> Drawing:
    """Colour-code a flow (Middlebury wheel; unknown pixels black). `max_flow`: the magnitude shown
    fully saturated (default: the field's maximum). `output`: a .png, checked before any work."""
    check_max_flow(max_flow)
    output = _check_output(output)
    field, valid = _read_flow(flow)
    return _finish(flow_to_color(field, max_flow=max_flow, valid=valid), None, output)


def draw_panel(img1: ImageLike, img2: ImageLike, *, flow: FlowLike | None = None, gt: FlowLike | None = None,
               max_flow: float | None = None, output: str | os.PathLike | None = None, weights=None,
               device: str = "auto", dtype: str = "fp32", options: InferenceOptions | None = None) -> Drawing:
    """image 1 | image 2 | [ground truth] | prediction | [error map] (flowcli.viz.panel).

    The prediction is `flow` when given (then weights and options must not be: they would do
    nothing), else predicted here with weights, device, dtype and options as for estimate_flow.
    """
    if flow is not None and (weights is not None or options is not None):
        raise FlowcliError("a given flow is drawn as the prediction: weights and options would do nothing")
    check_max_flow(max_flow)
    output = _check_output(output)
    names = tuple(f"image {n}" if isinstance(i, np.ndarray) else str(i) for n, i in ((1, img1), (2, img2)))
    img1, img2 = (i if isinstance(i, np.ndarray) else read_image(i) for i in (img1, img2))
    check_same_size(img1, img2, names)
    truth, valid = _read_flow(gt) if gt is not None else (None, None)
    if flow is not None:
        pred = _read_flow(flow)[0]
    else:
        from .predict import estimate_flow

        pred = estimate_flow(img1, img2, weights=weights, device=device, dtype=dtype, options=options)
    for name, field in (("prediction", pred), ("ground truth", truth)):
        if field is not None and field.shape[:2] != img1.shape[:2]:
            raise ImageError(f"{name} is {field.shape[0]}x{field.shape[1]} but the images are "
                             f"{img1.shape[0]}x{img1.shape[1]}")
    epe = None
    if truth is not None:
        from ..metrics import flow_metrics_np  # the EPE of `flowcli eval`

        epe = float(flow_metrics_np(pred, truth, valid)["epe"])
    return _finish(panel(img1, img2, pred, truth, valid, max_flow=max_flow), epe, output)


def _check_output(output: str | os.PathLike | None) -> Path | None:
    if output is None:
        return None
    output = check_writable(output)
    if output.suffix.lower() != ".png":
        raise OutputError(f"{output}: output must end in .png")
    return output


def _read_flow(flow: FlowLike) -> tuple[np.ndarray, np.ndarray]:
    return split_valid(flow) if isinstance(flow, np.ndarray) else read_flow(flow)


def _finish(image: np.ndarray, epe: float | None, output: Path | None) -> Drawing:
    if output is not None:
        write_image(output, image)
    return Drawing(image, epe, None if output is None else str(output))
