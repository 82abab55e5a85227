"""--max-side: frames shrunk for the network, and flow resized back to the input's size."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FlowcliError
from ..model import MIN_SIDE

DETAIL_SIDE = 128  # frames shrunk below this lose so much detail that the flow can be worse than zero flow


def check_max_side(max_side: int | None) -> None:
    """max_side is None (no downsizing) or at least the network's smallest input, 64 px."""
    if max_side is not None and max_side < MIN_SIDE:
        raise FlowcliError(f"max_side={max_side}: must be at least {MIN_SIDE} (the network's smallest input)")


def network_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The (height, width) the network sees for a frame of this size: the longer side shrunk to
    `max_side` when it exceeds it, aspect ratio kept, but no side below 64 px."""
    check_max_side(max_side)
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale))


def max_side_warning(height: int, width: int, max_side: int | None) -> str | None:
    """The one-line warning when `max_side` shrinks a frame of this size below 128 px, else None."""
    small = network_size(height, width, max_side)
    if small == (height, width) or min(small) >= DETAIL_SIDE:
        return None
    longer = max(height, width)
    enough = math.ceil(DETAIL_SIDE * longer / min(height, width))
    while enough < longer and min(network_size(height, width, enough)) < DETAIL_SIDE:
        enough += 1
    hint = f"max_side={enough} keeps {DETAIL_SIDE} px" if enough < longer else f"max_side={longer} keeps the full size"
    return (f"max_side={max_side}: the network sees {small[0]}x{small[1]} frames, and under {DETAIL_SIDE} px "
            f"its flow can be worse than zero flow ({hint})")


def resize_for_max_side(img1: np.ndarray, img2: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Shrink two (H, W, 3) uint8 frames to `network_size` (the longer side at most `max_side`).

    Returns (img1, img2, scale) with scale = new longer side / old (1.0 and the frames themselves
    when they already fit). Undo on the flow with `resize_flow(flow, H, W)`.
    """
    height, width = img1.shape[:2]
    size = network_size(height, width, max_side)
    if size == (height, width):
        return img1, img2, 1.0
    return _resize_image(img1, size), _resize_image(img2, size), max_side / max(height, width)


def resize_frame(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """One (H, W, 3) uint8 frame shrunk as resize_for_max_side shrinks a pair (a video's frames are
    shrunk once each, though each is in two pairs)."""
    size = network_size(*img.shape[:2], max_side)
    return img if size == img.shape[:2] else _resize_image(img, size)


def _resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear shrink of an (H, W, 3) uint8 frame, computed in uint8 by torch: no float
    copy of a large frame (a 20000x20000 one would take 4.8 GB) and ~4x faster than in float32
    (benchmarks/README.md, Decisions, Video); within one level of the float result."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
    small = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return small[0].permute(1, 2, 0).contiguous().numpy()


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (h, w, 2) flow to (height, width, 2), scaling u by width/w and v by height/h."""
    h, w = flow.shape[:2]
    if (h, w) == (height, width):
        return flow
    x = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0]
    x[0] *= width / w
    x[1] *= height / h
    return x.permute(1, 2, 0).contiguous().numpy()
