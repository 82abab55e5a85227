"""Where training batches come from: a Flying Chairs folder, or the generator (the embedded default).

Both hand the training loop (img1, img2, flow, valid) batches on the training device, and a fixed
validation set. Every epoch's data order and randomness derive from (seed, epoch, rank) alone, so
a resumed run sees exactly the data a straight run would.
"""

from __future__ import annotations

import os
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Iterator

import torch

from .config import TrainConfig
from ..errors import DataError
from ..data.prefetch import prefetch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
VARYING_SIZES = ("kitti", "middlebury", "list")  # layouts whose frames differ in size from pair to pair
UNKNOWN_MEMORY = 4 << 30  # bytes assumed free where the system does not say (not Linux)
VAL_SEED = 777_777  # generated validation scenes: a stream the training seeds never produce


SHUFFLE_STREAM = 1  # epoch_seed's stream for a folder's shuffle; the augmenter draws stream 0


def epoch_seed(seed: int, epoch: int, rank: int = 0, stream: int = 0) -> int:
    """The seed of one epoch's random draws on one rank. Streams keep two generators of one kind
    apart: seeded alike, a CPU shuffle and the CPU augmenter would draw the same numbers."""
    return (seed * 1_000_003 + epoch * 9_973 + rank * 101 + stream * 2**40) % (2**62)


class FolderSource:
    """Batches from a Flying Chairs folder split into train/val(/test); the run saves `split`."""

    def __init__(self, folder: Path, config: TrainConfig, *, device: torch.device, world_size: int = 1,
                 strict: bool = False, split_file: Path | None = None):
        """`split_file`: a resumed run's split.json, whose parts it keeps training on (a split drawn
        again would differ once pairs were added to the folder, and mix the test part into training)."""
        from ..data.dataset import FlowDataset, make_loader
        from ..data.layouts import find_pairs
        from ..data.splits import load_split, split_samples
        from ..device import available_memory

        found = find_pairs(folder, layout=config.layout, sintel_pass=config.sintel_pass, strict=strict)
        samples, self.incomplete = found.samples, found.incomplete
        if split_file is not None:
            self.split = load_split(split_file, samples)
        else:
            self.split = split_samples(samples, split=config.split, seed=config.seed, folder=folder)
        if not self.split["val"]:  # the best epoch is chosen on them: without any, "best" means nothing
            sizes = ", ".join(f"{part} {len(ids)}" for part, ids in self.split.items())
            raise DataError(f"{folder}: {len(samples)} pairs leave no validation pair in the {config.split} split "
                            f"({sizes}); add pairs")
        # frames of one size batch whole and are cropped by the augmenter; KITTI's, Middlebury's and a
        # list's differ in size from pair to pair, so their pairs are cropped before batching
        crop = None if config.augment and found.layout not in VARYING_SIZES else config.crop
        # Decoded pairs stay in memory up to half of what is free, shared by the machine's ranks (a
        # quarter of it for validation); workers are made anew each epoch, so a cache in them would
        # never be read again.
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        budget = (available_memory() or UNKNOWN_MEMORY) // 2 // max(1, local_ranks)
        self.train_set = FlowDataset(self.split["train"], crop=crop, seed=config.seed,
                                     cache_bytes=0 if config.num_workers else budget * 3 // 4)
        self.val_set = FlowDataset(self.split["val"], cache_bytes=budget // 4)
        self.loader = make_loader(self.train_set, batch_size=config.batch_size, shuffle=True,
                                  seed=config.seed, num_workers=config.num_workers, drop_last=True,
                                  distributed=world_size > 1, pin_memory=device.type == "cuda")
        self.device = device
        self.seed = config.seed
        self.steps_per_epoch = len(self.loader)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        if hasattr(self.loader, "generator") and self.loader.generator is not None:
            self.loader.generator.manual_seed(epoch_seed(self.seed, epoch, stream=SHUFFLE_STREAM))
        for item in self.loader:
            yield tuple(item[k].to(self.device, non_blocking=True) for k in ("img1", "img2", "flow", "valid"))

    def validation(self) -> Iterator[Batch]:
        for i in range(len(self.val_set)):
            item = self.val_set[i]
            yield tuple(item[k][None].to(self.device) for k in ("img1", "img2", "flow", "valid"))


def synth_train_size(c: TrainConfig) -> tuple[int, int]:
    """(H, W) of the generated training scenes. Without resampling augmentation the crop of a scene in
    Flying Chairs pixels is a window of it, and a window rendered directly is the same kind of scene
    at a fraction of the cost (benchmarks/README.md, Training). Without augmentation nothing would
    crop the scenes, so they are drawn at the crop's size."""
    window = not c.augment or (c.synth_chairs_pixels and not c.geometric)
    return c.crop if window else c.synth_size


class SynthSource:
    """Batches drawn on the fly from the generator, on the training device.

    With `synth_motion="mixed"` batches alternate between the "chairs" and "wide" profiles. The
    validation scenes are always the "chairs" profile at `synth_size`, so that runs compare."""

    def __init__(self, config: TrainConfig, *, device: torch.device, rank: int = 0):
        from ..data.scenes import SynthConfig
        from ..data.synth import SceneGenerator

        self.config = config
        self.rank = rank
        self.device = device
        height, width = config.synth_size
        # By default scenes smaller than Flying Chairs keep its pixel statistics (motions, sizes).
        scenes = SynthConfig(height=height, width=width, chairs_pixels=config.synth_chairs_pixels)
        profiles = ("chairs", "wide") if config.synth_motion == "mixed" else (config.synth_motion,)
        self.generators = [SceneGenerator(replace(scenes, height=self.train_size[0], width=self.train_size[1])
                                          .with_motion(name), seed=config.seed, device=device,
                                          compile=config.compile)
                           for name in profiles]
        val = SceneGenerator(scenes, seed=VAL_SEED, device=device)
        self.val = [val.batch(1) for _ in range(config.val_count)]
        self.steps_per_epoch = config.steps_per_epoch
        self.incomplete: list[str] = []

    @property
    def train_size(self) -> tuple[int, int]:
        return synth_train_size(self.config)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """With num_workers > 0 the next batch is generated in a background thread while the current
        one trains (the same batches, in the same order, as without). Mixed profiles alternate step
        by step: one batch of each is drawn, then the group is repeated `synth_reuse` times."""
        for index, generator in enumerate(self.generators):
            generator.reseed(epoch_seed(self.config.seed, epoch, self.rank) + index)
        reuse = max(1, self.config.synth_reuse)
        count = -(-self.steps_per_epoch // reuse)

        def draw(i: int) -> Batch:
            img1, img2, flow = self.generators[i % len(self.generators)].batch(self.config.batch_size)
            return img1, img2, flow, torch.ones_like(flow[:, 0], dtype=torch.bool)

        if self.config.num_workers > 0:
            side = SideStream(self.device)
            batches = (side.hand_over(*f.result())
                       for f in prefetch(lambda i: side.run(draw, i), count, depth=2, workers=1, name="flowcli-synth"))
        else:
            batches = (draw(i) for i in range(count))
        while drawn := list(islice(batches, len(self.generators))):
            for _ in range(reuse):
                yield from drawn

    def validation(self) -> Iterator[Batch]:
        for img1, img2, flow in self.val:
            yield img1, img2, flow, torch.ones_like(flow[:, 0], dtype=torch.bool)


class SideStream:
    """On CUDA, the stream the generator's thread draws on, so that its kernels and host-to-device
    copies do not queue behind the training step's (a copy from pageable memory waits for its whole
    stream). `hand_over` makes the training stream wait for the batch. Elsewhere it does nothing."""

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def run(self, draw, *args):
        """(draw(*args), the event marking its end on this stream, or None off CUDA)."""
        if self.stream is None:
            return draw(*args), None
        with torch.cuda.stream(self.stream):
            batch = draw(*args)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return batch, ready

    @staticmethod
    def hand_over(batch: Batch, ready) -> Batch:
        if ready is not None:
            training = torch.cuda.current_stream(batch[0].device)
            training.wait_event(ready)
            for tensor in batch:  # the allocator must not reuse its memory before the training stream is done
                tensor.record_stream(training)
        return batch
