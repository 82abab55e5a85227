"""Ground-truth occlusion of generated pairs: which pixels of image 1 have no match in image 2.

The generator knows every pixel's front layer in both frames (SceneBatch.layers1/layers2) and the
exact flow. Layers are flat and move as one (an affine map, or a homography in the "wide" motion
profile), so a pixel p of layer l in image 1 lands at q = p + flow(p), and layer l itself covers q
in image 2 (same canonical point). p is therefore visible in image 2 exactly when l is still the
front layer at q: it is occluded when another layer has moved over q, or when q leaves the frame. The front layer is known at pixel centres, so q is
rounded to the nearest pixel: the mask is exact to the pixel, as Sintel's and KITTI's are.
"""

from __future__ import annotations

import torch
from torch import Tensor


def true_occlusion(flow: Tensor, layers1: Tensor, layers2: Tensor) -> Tensor:
    """(B, H, W) True where a pixel of image 1 is hidden in image 2 by another layer or leaves the
    frame; `flow` (B, 2, H, W) is image 1's exact flow, layers* (B, H, W) the front layer ids."""
    batch, _, height, width = flow.shape
    xs = torch.arange(width, dtype=torch.float32, device=flow.device) + flow[:, 0]
    ys = torch.arange(height, dtype=torch.float32, device=flow.device)[:, None] + flow[:, 1]
    # the frame as metrics.leaves_frame has it: pixel centres 0 .. W-1, 0 .. H-1
    outside = (xs < 0) | (xs > width - 1) | (ys < 0) | (ys > height - 1)
    qx = (xs + 0.5).floor_().clamp_(0, width - 1).long()
    qy = (ys + 0.5).floor_().clamp_(0, height - 1).long()
    front = layers2.reshape(batch, -1).gather(1, (qy * width + qx).reshape(batch, -1)).view(batch, height, width)
    return outside | (front != layers1)
