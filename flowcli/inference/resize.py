"""--max-side: frames shrunk for the network, and flow resized back to the input's size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..model import MIN_SIDE


def resize_for_max_side(img1: np.ndarray, img2: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Shrink two (H, W, 3) uint8 frames so that the longer side is at most `max_side`.

    Returns (img1, img2, scale) with scale = new longer side / old (1.0 and the frames themselves
    when they already fit). Aspect ratio is kept, but no side goes below 64 px. Undo on the flow
    with `resize_flow(flow, H, W)`.
    """
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
    height, width = img1.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return img1, img2, 1.0
    size = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    return _resize_image(img1, size), _resize_image(img2, size), scale


def _resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


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
