"""InferenceOptions: the defaults every inference command shares, their checks and their labels."""

from __future__ import annotations

import pytest

from flowcli.errors import FlowcliError
from flowcli.inference.options import InferenceOptions


def test_defaults_one_refinement_step_and_smoothing():
    options = InferenceOptions()
    assert options.as_dict() == {"tta": "none", "passes": 1, "smooth": True, "refine": 1, "backend": "torch"}
    assert options.label() == ""


def test_backend_is_checked_and_named_in_the_label():
    assert InferenceOptions(backend="onnxruntime").label() == "backend onnxruntime"
    with pytest.raises(FlowcliError, match="backend='tensorrt': choose one of torch, onnxruntime"):
        InferenceOptions(backend="tensorrt")


def test_the_label_names_what_differs_from_the_defaults_in_pipeline_order():
    options = InferenceOptions(tta="hflip", passes=2, smooth=False, refine=0)
    assert options.label() == "tta hflip, passes 2, no smoothing, refine 0"
    assert InferenceOptions(refine=2).label() == "refine 2"


@pytest.mark.parametrize("kwargs, message", [
    ({"tta": "sideways"}, "tta='sideways': choose one of none, hflip, hvflip"),
    ({"passes": 0}, "passes=0: the network runs at least once"),
    ({"refine": -1}, "refine=-1: the number of refinement steps cannot be negative"),
])
def test_bad_values_are_one_clear_error(kwargs, message):
    with pytest.raises(FlowcliError, match=message):
        InferenceOptions(**kwargs)
