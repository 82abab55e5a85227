"""Many pairs of image files through one Predictor: background threads decode the next pairs
(and shrink them for --max-side) while the network runs; a frame shared by two pairs is decoded once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..data.prefetch import prefetch
from ..errors import FlowcliError
from ..io import read_image, read_image_pair
from .engine import Predictor
from .occlusion import predict_checked_uint8
from .resize import check_max_side, resize_flow, resize_for_max_side


def iterate_predictions(predictor: Predictor, pairs: Sequence[tuple[Path, Path]], *,
                        max_side: int | None = None, workers: int = 2,
                        fb_check: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, (H, W, 2) flow at the input's size) for every (image 1, image 2) path pair, in
    order. An unreadable pair raises its ImageError when its turn comes. fb_check=True yields a
    CheckedFlow (flowcli.inference.occlusion) instead of the flow."""
    if workers < 1:
        raise FlowcliError(f"workers={workers}: must be at least 1")
    check_max_side(max_side)
    pairs = list(pairs)
    decodes = _SharedDecodes(pairs, large=max_side is not None)  # a frame over Pillow's limit is shrunk right away

    def load(index: int):
        img1, img2 = read_image_pair(*pairs[index], read=decodes.read)
        size = img1.shape[:2]
        if max_side is not None:
            img1, img2, _ = resize_for_max_side(img1, img2, max_side)
        return img1, img2, size

    for index, future in enumerate(prefetch(load, len(pairs), depth=2 + workers, workers=workers,
                                            name="flowcli-decode")):
        img1, img2, (height, width) = future.result()
        if fb_check:
            yield index, predict_checked_uint8(predictor, img1, img2, height, width)
            continue
        flow = predictor.predict_uint8(img1[None], img2[None])[0]
        yield index, resize_flow(flow, height, width)


class _SharedDecodes:
    """read_image for pairs that share images (a video's frames: each is the second image of one
    pair and the first of the next): a path is decoded once, by the first thread that asks for it,
    and forgotten after its last use, because decoding is a large share of `predict --sequence`."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], *, large: bool = False):
        self._large = large
        self._uses = Counter(path for pair in pairs for path in pair)
        self._decoded: dict[Path, Future] = {}
        self._lock = threading.Lock()

    def read(self, path: Path) -> np.ndarray:
        with self._lock:
            future = self._decoded.get(path)
            first = future is None
            if first:
                future = self._decoded[path] = Future()
            self._uses[path] -= 1
            if self._uses[path] <= 0:
                self._decoded.pop(path, None)
        if first:
            try:
                future.set_result(read_image(path, large=self._large))
            except BaseException as exc:  # the other pair that uses the image gets the same error
                future.set_exception(exc)
        return future.result()
