"""flowcli: optical flow with FlowNetS from the command line and from Python.

    >>> from flowcli import estimate_flow
    >>> flow = estimate_flow("a.ppm", "b.ppm")  # (H, W, 2) float32, pixels

Layout (data flows one way, top to bottom):
    io.py, viz.py          files: .flo and images; colour-coded flow and panels
    data/                  Flying Chairs folders, splits, augmentation, the scene generator
    model.py, checkpoint.py  FlowNetS; weights files that carry their architecture
    inference/             engine, post-network pipeline, predict / evaluate / bench
    training/              recipe (TrainConfig, presets), data sources, loss, the loop
    cli/                   one module per command, a thin layer over the above

The names below are imported on first use, so `import flowcli` stays light.
"""

from __future__ import annotations

__version__ = "0.18.1"

# public name -> module that defines it
_API = {
    "estimate_flow": "flowcli.inference.predict",
    "predict_folder": "flowcli.inference.predict",
    "predict_video": "flowcli.inference.video",
    "evaluate": "flowcli.inference.evaluate",
    "run_bench": "flowcli.inference.bench",
    "load_predictor": "flowcli.inference.engine",
    "InferenceOptions": "flowcli.inference.options",
    "CheckedFlow": "flowcli.inference.occlusion",
    "describe_pipeline": "flowcli.inference.pipeline",
    "train": "flowcli.training.loop",
    "TrainConfig": "flowcli.training.config",
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'flowcli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)


__all__ = ["__version__", *_API]
