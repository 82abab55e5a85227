"""Training: the recipe (config.py: TrainConfig, its named presets and resolve_config), where batches
come from (sources.py: a folder or the generator), what a run is built from (setup.py), FlowNet's
multi-scale loss (loss.py), the learning-rate schedule and time budget (schedule.py), the run
folder's life and resume (rundir.py), reading steps without stalling a GPU (steps.py) and the loop
(loop.py: train() returning a TrainResult)."""
