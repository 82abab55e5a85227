"""Training: the recipe (config.py: TrainConfig, its named presets and resolve_config), where batches
come from (sources.py: a folder or the generator), FlowNet's multi-scale loss (loss.py), the run
folder's life (rundir.py) and the loop (loop.py: train() returning a TrainResult)."""
