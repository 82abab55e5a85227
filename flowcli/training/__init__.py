"""Training: the recipe (config.py: TrainConfig and its named presets), where batches come from
(sources.py: a folder or the generator), FlowNet's multi-scale loss (loss.py) and the loop (loop.py)."""
