"""Inference: InferenceOptions (options.py) become an ordered pipeline of steps (pipeline.py: the
network with test-time views, extra passes, Lucas-Kanade refinement, guided smoothing) that the
engine (engine.py: BatchNorm folding, dtype, channels-last, CUDA graphs) runs fast; predict.py,
evaluate.py and bench.py are the Python API behind the commands of the same names."""
