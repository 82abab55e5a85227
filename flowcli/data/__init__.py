"""Datasets: Flying Chairs folders (folders.py), their splits (splits.py), a torch Dataset
(dataset.py), exact batched augmentation (augment.py) and the Flying-Chairs-style scene generator
(synth.py with its texture and shape banks in textures.py)."""
