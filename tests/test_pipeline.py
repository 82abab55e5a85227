"""The post-network pipeline: which steps InferenceOptions make, in which order, and that running
them equals calling the step functions by hand."""

from __future__ import annotations

import torch

from flowcli.inference.guided import guided_filter
from flowcli.inference.options import InferenceOptions
from flowcli.inference.pipeline import (
    ExtraPasses, NetworkPass, Refine, Smooth, averaged_over_views, build_pipeline, describe_pipeline, run_pipeline,
)
from flowcli.inference.refine import refine_flow


def test_defaults_are_network_half_resolution_step_then_smoothing():
    assert build_pipeline(InferenceOptions()) == (NetworkPass((0,)), Refine(1, scale=2), Smooth())


def test_every_option_adds_its_step_in_order():
    steps = build_pipeline(InferenceOptions(tta="hflip", passes=3, smooth=True, refine=3))
    assert steps == (NetworkPass((0, -1)), ExtraPasses(2, "hflip"), Refine(1, scale=2), Smooth(), Refine(2))
    assert build_pipeline(InferenceOptions(refine=0, smooth=False)) == (NetworkPass((0,)),)


def test_descriptions_name_each_step_once_in_order():
    lines = describe_pipeline(InferenceOptions(tta="hflip", passes=2, refine=2))
    assert [line.split(":")[0] for line in lines] == ["network", "pass 2", "refine", "smooth", "refine"]
    assert "left-right mirror" in lines[0] and "averaged" in lines[0]
    assert "half resolution" in lines[2] and "2 Lucas-Kanade" not in lines[2]
    assert "full resolution" in lines[4]


def test_running_the_steps_equals_calling_the_functions_by_hand():
    torch.manual_seed(0)
    img1, img2 = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    raw = torch.randn(1, 2, 32, 48)
    network = lambda a, b, views: raw.clone()  # noqa: E731  (a stand-in network: a fixed flow)
    flow = run_pipeline(build_pipeline(InferenceOptions(refine=2)), img1, img2, network)
    by_hand = refine_flow(img1, img2, raw, iterations=1, scale=2)
    by_hand = refine_flow(img1, img2, guided_filter(img1, by_hand), iterations=1)
    torch.testing.assert_close(flow, by_hand)


def test_views_are_unmirrored_and_averaged():
    """A stand-in network that returns a flow field depending on x: the mirrored view's flow, flipped
    back with u negated, must equal the plain one for a mirror-symmetric 'network'."""
    def flow_of(a, b):
        return torch.cat([a[:, :1] - b[:, :1], a[:, 1:2] * 0], 1)  # u = difference of the red channels

    torch.manual_seed(1)
    img1, img2 = torch.rand(1, 3, 8, 10), torch.rand(1, 3, 8, 10)
    plain = flow_of(img1, img2)
    averaged = averaged_over_views(flow_of, img1, img2, (0, -1))
    # the mirrored view gives u' = mirror(a - b); un-mirrored and negated: -(a - b); the mean is 0
    torch.testing.assert_close(averaged[:, 0], torch.zeros_like(plain[:, 0]))
    torch.testing.assert_close(averaged_over_views(flow_of, img1, img2, (0,)), plain)
