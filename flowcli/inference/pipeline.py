"""What runs from the image pair to the final flow, as an ordered list of steps built from
InferenceOptions. The engine runs the list (on CUDA inside one captured graph); `flowcli info
--pipeline` and `predict --verbose` print it, so what runs by default is visible, not only documented.

Every step is a callable `step(img1, img2, flow, network) -> flow` on (B, 3, H, W) frames in [0, 1]
and (B, 2, H, W) float32 flow in pixels; `network(img1, img2, views)` is the engine's FlowNetS call
averaged over the given views of the pair. Why each step sits where it does: benchmarks/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .guided import guided_filter, window_pixels
from .options import TTA_VIEWS, InferenceOptions
from .refine import WINDOW, refine_flow
from .warp import Warper, window_error

Network = Callable[[Tensor, Tensor, tuple[int, ...]], Tensor]
PASS_WINDOW = 7  # --passes: a pixel keeps a new flow where the colour error over this window drops
VIEW_NAMES = {0: "the pair", -1: "its left-right mirror", -2: "its up-down mirror"}


@dataclass(frozen=True)
class NetworkPass:
    """FlowNetS on the pair (and its mirrored views, averaged): flow at 1/4 resolution, upsampled 4x
    (bilinearly, or by the network's learned convex upsampler)."""

    views: tuple[int, ...]

    def __call__(self, img1: Tensor, img2: Tensor, flow: Tensor | None, network: Network) -> Tensor:
        return network(img1, img2, self.views)

    def describe(self) -> str:
        seen = " and ".join(VIEW_NAMES[d] for d in self.views)
        averaged = ", flows averaged" if len(self.views) > 1 else ""
        return f"network: FlowNetS on {seen}{averaged}; its 1/4-resolution flow upsampled to full resolution"


@dataclass(frozen=True)
class ExtraPasses:
    """passes - 1 more network runs on (image 1, image 2 warped by the flow so far).

    The residual r maps image 1 onto the warped image 2, so the composed flow is r(p) + flow(p + r(p)).
    A pixel keeps it only where the window's colour error drops: the warped image has ghosts where
    the flow is wrong or occluded, which the network never saw in training. Without --tta every
    second pass runs on the mirrored pair, whose errors differ, so the gate has a real alternative.
    """

    count: int
    tta: str

    def __call__(self, img1: Tensor, img2: Tensor, flow: Tensor, network: Network) -> Tensor:
        warp, reference = Warper(*flow.shape[-2:], flow.device), img1.float()
        warped = warp(img2, flow)
        error = window_error(reference, warped, PASS_WINDOW)
        for extra in range(1, self.count + 1):
            residual = network(img1, warped.to(img1.dtype), self.views(extra))
            candidate = residual + warp(flow, residual)
            warped_candidate = warp(img2, candidate)
            candidate_error = window_error(reference, warped_candidate, PASS_WINDOW)
            better = candidate_error < error
            flow = torch.where(better[:, None], candidate, flow)
            warped = torch.where(better[:, None], warped_candidate, warped)
            error = torch.where(better, candidate_error, error)
        return flow

    def views(self, extra: int) -> tuple[int, ...]:
        if self.tta != "none":
            return TTA_VIEWS[self.tta]
        return (-1,) if extra % 2 else (0,)

    def describe(self) -> str:
        which = "pass 2" if self.count == 1 else f"passes 2-{self.count + 1}"
        return (f"{which}: the network on image 1 and image 2 warped by the flow so far; "
                f"a pixel keeps the composed flow where the {PASS_WINDOW}x{PASS_WINDOW} colour error drops")


@dataclass(frozen=True)
class Refine:
    """Lucas-Kanade steps on the pair (flowcli.inference.refine); scale=2 runs them at half resolution."""

    iterations: int
    scale: int = 1

    def __call__(self, img1: Tensor, img2: Tensor, flow: Tensor, network: Network) -> Tensor:
        return refine_flow(img1, img2, flow, iterations=self.iterations, scale=self.scale)

    def describe(self) -> str:
        where = "half" if self.scale == 2 else "full"
        steps = "step" if self.iterations == 1 else "steps"
        return (f"refine: {self.iterations} Lucas-Kanade {steps} at {where} resolution "
                f"({WINDOW}x{WINDOW} windows), kept where the colour error drops")


@dataclass(frozen=True)
class Smooth:
    """The guided filter along image 1's colour edges (flowcli.inference.guided)."""

    def __call__(self, img1: Tensor, img2: Tensor, flow: Tensor, network: Network) -> Tensor:
        return guided_filter(img1, flow)

    def describe(self) -> str:
        return f"smooth: guided filter along image 1's colour edges ({window_pixels()} px windows)"


Step = NetworkPass | ExtraPasses | Refine | Smooth


def build_pipeline(options: InferenceOptions) -> tuple[Step, ...]:
    """The steps `options` asks for, in the order they run."""
    steps: list[Step] = [NetworkPass(TTA_VIEWS[options.tta])]
    if options.passes > 1:
        steps.append(ExtraPasses(options.passes - 1, options.tta))
    if options.refine >= 1:  # the first step at half resolution, before the filter
        steps.append(Refine(1, scale=2))
    if options.smooth:
        steps.append(Smooth())
    if options.refine >= 2:
        steps.append(Refine(options.refine - 1))
    return tuple(steps)


def run_pipeline(steps: tuple[Step, ...], img1: Tensor, img2: Tensor, network: Network) -> Tensor:
    flow = None
    for step in steps:
        flow = step(img1, img2, flow, network)
    return flow


def describe_pipeline(options: InferenceOptions) -> list[str]:
    """One line per step, in order: what `flowcli info --pipeline` prints."""
    return [step.describe() for step in build_pipeline(options)]


def averaged_over_views(flow_of: Callable[[Tensor, Tensor], Tensor], img1: Tensor, img2: Tensor,
                        views: tuple[int, ...]) -> Tensor:
    """flow_of on every view of the pair (TTA_VIEWS' codes) in one batch, un-mirrored and averaged."""
    if views == (0,):
        return flow_of(img1, img2)
    flows = flow_of(torch.cat([_mirror(img1, d) for d in views]),
                    torch.cat([_mirror(img2, d) for d in views])).chunk(len(views))
    total = torch.zeros_like(flows[0])
    for d, flow in zip(views, flows):
        flow = _mirror(flow, d)
        if d:
            flow[:, 0 if d == -1 else 1].neg_()  # mirroring along x negates u; along y, v
        total += flow
    return total / len(views)


def _mirror(x: Tensor, dim: int) -> Tensor:
    """x mirrored along dim (-1: left-right, -2: up-down); dim 0 leaves it as it is."""
    return x.flip(dim) if dim else x
