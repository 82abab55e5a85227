"""flowcli: optical flow with FlowNetS from the command line and from Python.

    >>> from flowcli import estimate_flow
    >>> flow = estimate_flow("a.ppm", "b.ppm")  # (H, W, 2) float32, pixels
"""

__version__ = "0.6.0"


def estimate_flow(img1, img2, **kwargs):
    """Flow from img1 to img2 (arrays or paths); see flowcli.predict.estimate_flow."""
    from .inference.predict import estimate_flow as _estimate_flow

    return _estimate_flow(img1, img2, **kwargs)


__all__ = ["estimate_flow", "__version__"]
