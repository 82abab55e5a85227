"""Datasets: Flying Chairs folders (folders.py), their splits (splits.py), a torch Dataset
(dataset.py), exact batched augmentation (augment.py) and the Flying-Chairs-style scene generator
(scenes.py draws a scene's layers, synth.py renders them, with the texture and shape banks of
textures.py and the per-pixel kernels of render.py)."""
