"""Visualisation API: a flow field colour-coded, several on one colour scale, or a titled comparison
panel for a pair (predicted here or given), with its EPE when ground truth is given. Each returns
the image and writes it when asked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FlowcliError, ImageError, OutputError
from ..io import check_out_files, check_same_size, check_writable, read_flow, read_image, split_valid, write_image
from ..results import JsonResult
from ..viz import check_max_flow, flow_to_color, shared_max_flow
from ..viz_arrows import check_arrow_options, draw_arrows
from ..viz_panel import labelled_panel
from ..viz_text import add_legend
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
    max_flow: float | None = None  # the flow's colour scale: px shown fully saturated (0: nothing moves)

    def as_dict(self) -> dict:
        height, width = self.image.shape[:2]
        return {"output": self.output, "height": height, "width": width, "epe": self.epe, "max_flow": self.max_flow}


def draw_flow(flow: FlowLike, *, max_flow: float | None = None, legend: bool = True, arrows: bool = False,
              arrow_step: int | None = None, arrow_scale: float | None = None,
              output: str | os.PathLike | None = None, overwrite: bool = False) -> Drawing:
    """Colour-code a flow (Middlebury wheel; unknown pixels black). `max_flow`: the magnitude shown
    fully saturated (default: the field's maximum). `legend`: the wheel and that magnitude in the
    bottom-right corner (flowcli.viz_text.add_legend). `arrows`: a dark arrow every `arrow_step` px
    (flowcli.viz_arrows.draw_arrows; `arrow_scale` px of arrow per px of flow). `output`: a .png,
    checked before any work (an existing file is replaced only with overwrite=True)."""
    return draw_flows([flow], max_flow=max_flow, legend=legend, arrows=arrows, arrow_step=arrow_step,
                      arrow_scale=arrow_scale, outputs=[output], overwrite=overwrite)[0]


def draw_flows(flows: list[FlowLike], *, max_flow: float | None = None, legend: bool = True, arrows: bool = False,
               arrow_step: int | None = None, arrow_scale: float | None = None,
               output_dir: str | os.PathLike | None = None, overwrite: bool = False,
               outputs: list[str | os.PathLike | None] | None = None) -> tuple[Drawing, ...]:
    """Colour-code several flows of one size on ONE scale (max_flow, by default the largest known
    magnitude over all of them), so that e.g. a ground truth and a prediction drawn apart compare by
    eye. Options as for draw_flow. `output_dir`: write each `<name>.flo` as `<output_dir>/<name>.png`
    (the folder is made if missing; pictures already there are refused before any work unless
    overwrite=True); or `outputs`: one .png path (or None) per flow, likewise refused if it exists."""
    check_max_flow(max_flow)
    check_arrow_options(arrow_step, arrow_scale)
    if not flows:
        raise FlowcliError("no flow to draw")
    if outputs is not None and len(outputs) != len(flows):
        raise FlowcliError(f"{len(flows)} flows but {len(outputs)} outputs: give one output (or None) per flow")
    targets = _targets(flows, output_dir, overwrite) if output_dir is not None else \
        [_check_output(o, overwrite, flows) for o in (outputs or [None] * len(flows))]
    fields = [_read_flow(f) for f in flows]
    names = [f"flow {n}" if isinstance(f, np.ndarray) else str(f) for n, f in enumerate(flows, 1)]
    for name, (field, _) in zip(names[1:], fields[1:]):
        if field.shape != fields[0][0].shape:
            raise ImageError(f"{name} is {field.shape[0]}x{field.shape[1]} but {names[0]} is "
                             f"{fields[0][0].shape[0]}x{fields[0][0].shape[1]}: flows drawn on one scale must "
                             "have one size")
    scale = max_flow or shared_max_flow([f for f, _ in fields], [v for _, v in fields])
    if output_dir is not None:
        Path(output_dir).mkdir(exist_ok=True)
    drawings = []
    for (field, valid), target in zip(fields, targets):
        image = flow_to_color(field, max_flow=scale or None, valid=valid)
        if arrows:
            image = draw_arrows(image, field, step=arrow_step, scale=arrow_scale, max_flow=scale, valid=valid,
                                coloured=False)
        if legend:
            image = add_legend(image, scale).image
        drawings.append(_finish(image, None, target, scale))
    return tuple(drawings)


def draw_panel(img1: ImageLike, img2: ImageLike, *, flow: FlowLike | None = None, gt: FlowLike | None = None,
               max_flow: float | None = None, legend: bool = True, arrows: bool = False,
               arrow_step: int | None = None, arrow_scale: float | None = None,
               output: str | os.PathLike | None = None, overwrite: bool = False, weights=None,
               device: str = "auto", dtype: str = "fp32", options: InferenceOptions | None = None) -> Drawing:
    """image 1 | image 2 | [ground truth] | prediction | [error map], titled, with the legend of the
    flow tiles' shared scale and the error map's colour bar below (flowcli.viz_panel); `arrows`:
    the prediction's arrow field over image 1 (step and scale as for draw_flow).

    The prediction is `flow` when given (then weights and options must not be: they would do
    nothing), else predicted here with weights, device, dtype and options as for estimate_flow.
    """
    if flow is not None and (weights is not None or options is not None):
        raise FlowcliError("a given flow is drawn as the prediction: weights and options would do nothing")
    check_max_flow(max_flow)
    check_arrow_options(arrow_step, arrow_scale)
    output = _check_output(output, overwrite, (img1, img2, flow, gt))
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
    drawn = labelled_panel(img1, img2, pred, truth, valid, max_flow=max_flow, epe=epe, legend=legend,
                           arrows=arrows, arrow_step=arrow_step, arrow_scale=arrow_scale)
    return _finish(drawn.image, epe, output, drawn.max_flow)


def _targets(flows: list[FlowLike], output_dir: str | os.PathLike, overwrite: bool) -> list[Path]:
    """<output_dir>/<name>.png for each flow file, checked before any work."""
    if any(isinstance(f, np.ndarray) for f in flows):
        raise FlowcliError("output_dir names the pictures after the flow files: give paths, not arrays")
    out = Path(output_dir)
    if not out.exists() and out.suffix.lower() == ".png":
        raise OutputError(f"{out}: several flows are drawn into a folder, one picture each, not into one .png")
    targets = [out / f"{Path(f).stem}.png" for f in flows]
    check_out_files(out, targets, overwrite, what="pictures")
    seen: dict[Path, FlowLike] = {}
    for flow, target in zip(flows, targets):
        if target in seen:
            raise OutputError(f"{seen[target]} and {flow} would both be drawn as {target}")
        seen[target] = flow
    return targets


def _check_output(output: str | os.PathLike | None, overwrite: bool, inputs) -> Path | None:
    if output is None:
        return None
    output = check_writable(output, overwrite=overwrite, inputs=inputs)
    if output.suffix.lower() != ".png":
        raise OutputError(f"{output}: output must end in .png")
    return output


def _read_flow(flow: FlowLike) -> tuple[np.ndarray, np.ndarray]:
    return split_valid(flow) if isinstance(flow, np.ndarray) else read_flow(flow)


def _finish(image: np.ndarray, epe: float | None, output: Path | None, max_flow: float) -> Drawing:
    if output is not None:
        write_image(output, image)
    return Drawing(image, epe, None if output is None else str(output), max_flow)
