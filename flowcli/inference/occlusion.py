"""Forward-backward consistency: where a predicted flow cannot be trusted (`--fb-check`).

The backward flow (image 2 -> image 1) is predicted in the same batch as the forward one: the
predictor runs on the batch (img1, img2) -> (img2, img1), so every pipeline step (network passes,
--tta views, refinement, smoothing) runs on both directions at once. Then, after Sundaram, Brox and
Keutzer (ECCV 2010), with w_f the forward flow and w_b~(x) = w_b(x + w_f(x)) the backward flow
sampled where x lands (bilinear):

    residual r(x) = |w_f + w_b~|^2          bound b(x) = 0.01 (|w_f|^2 + |w_b~|^2) + 0.5

A pixel is occluded or unreliable where r > b (the two flows disagree by more than motion
estimates do) or where x + w_f(x) leaves the frame (nothing in image 2 to check against).
Confidence is the same residual relative to its bound, as a number in [0, 1]:

    confidence = 2 ** (-r / b), and 0 where the match leaves the frame

so it is 1 for flows that agree exactly, 0.5 exactly at Sundaram's threshold (mask == confidence
< 0.5) and falls smoothly beyond it. Costs and measured quality: README, "Occlusion and confidence".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..metrics import leaves_frame
from .warp import Warper

RELATIVE = 0.01  # Sundaram et al.'s alpha_1: tolerance that grows with the motion
ABSOLUTE = 0.5  # alpha_2, px^2: tolerance for small motions
UNKNOWN = 1e10  # Middlebury's UNKNOWN_FLOW (readers treat > 1e9 as unknown): what --mask-invalid writes


@dataclass(frozen=True)
class CheckedFlow:
    """estimate_flow(..., fb_check=True): the forward flow with where it can be trusted.

    flow, backward: (H, W, 2) float32 px; occluded: (H, W) bool (check failed or match leaves the
    frame); confidence: (H, W) float32 in [0, 1] (2 ** (-residual / bound); 0.5 at the threshold).
    """

    flow: np.ndarray
    backward: np.ndarray
    occluded: np.ndarray
    confidence: np.ndarray

    @property
    def occluded_share(self) -> float:
        return float(self.occluded.mean())

    def masked_flow(self) -> np.ndarray:
        """The flow with occluded pixels set to unknown (UNKNOWN in both components), as .flo files mark them."""
        return np.where(self.occluded[..., None], np.float32(UNKNOWN), self.flow).astype(np.float32)


def fb_residual(forward: Tensor, backward: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2, H, W) forward and backward flows -> (residual, bound), each (B, H, W), as above."""
    forward, backward = forward.float(), backward.float()
    sampled = Warper(*forward.shape[-2:], forward.device)(backward, forward)  # w_b(x + w_f(x))
    residual = (forward + sampled).square().sum(1)
    bound = RELATIVE * (forward.square().sum(1) + sampled.square().sum(1)) + ABSOLUTE
    return residual, bound


def fb_check(forward: Tensor, backward: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2, H, W) forward and backward flows -> occluded (B, H, W) bool, confidence (B, H, W) float32."""
    residual, bound = fb_residual(forward, backward)
    outside = leaves_frame(forward)
    occluded = (residual > bound) | outside
    confidence = torch.exp2(-residual / bound).masked_fill_(outside, 0.0)
    return occluded, confidence


def both_directions(img1: Tensor, img2: Tensor) -> tuple[Tensor, Tensor]:
    """The batch of two (or 2B) that yields forward and backward flows in one predictor call."""
    return torch.cat((img1, img2)), torch.cat((img2, img1))


def predict_checked(predictor, img1: Tensor, img2: Tensor) -> tuple[Tensor, Tensor]:
    """(forward flow, occluded mask) of (B, 3, H, W) pairs: one predictor call on the batch of both
    directions, then the check."""
    forward, backward = predictor(*both_directions(img1, img2)).chunk(2)
    return forward, fb_check(forward, backward)[0]


def check_arrays(forward: np.ndarray, backward: np.ndarray) -> CheckedFlow:
    """fb_check on (H, W, 2) numpy flows of the same size."""
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]  # noqa: E731
    occluded, confidence = fb_check(to_t(forward), to_t(backward))
    return CheckedFlow(forward, backward, occluded[0].numpy(), confidence[0].numpy())


def predict_checked_uint8(predictor, img1: np.ndarray, img2: np.ndarray, height: int, width: int) -> CheckedFlow:
    """(h, w, 3) uint8 frames (shrunk for max_side or not) -> CheckedFlow at (height, width).

    One predictor call on the batch of two; both flows are resized to the output size first, so the
    check runs where the flow is used."""
    from .resize import resize_flow

    flows = predictor.predict_uint8(np.stack((img1, img2)), np.stack((img2, img1)))  # (2, h, w, 2)
    forward, backward = (resize_flow(f, height, width) for f in flows)
    return check_arrays(forward, backward)


def confidence_to_uint16(confidence: np.ndarray) -> np.ndarray:
    """[0, 1] -> 16-bit PNG values (65535 = 1.0)."""
    return np.rint(np.clip(confidence, 0.0, 1.0) * 65535).astype(np.uint16)


def mask_to_uint8(occluded: np.ndarray) -> np.ndarray:
    """bool -> 8-bit PNG values (255 = occluded or unreliable)."""
    return occluded.astype(np.uint8) * 255
