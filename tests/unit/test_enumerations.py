"""params.py types each enumeration once; the modules that check a value take the same Literal and
say "allowed:" from it (params.allowed_values), so the message and the params agree."""

from __future__ import annotations

from typing import get_args

import pytest

from emoneurons import params
from emoneurons.evaluate.shots import draw_shots
from emoneurons.neurons import masking, selection
from emoneurons.report import style
from emoneurons.text.chat_prompt import label_ids
from emoneurons.text.prompt_format import PromptFormatError, resolve_prompt_format


@pytest.mark.parametrize(("check", "kind"), [
    (lambda: label_ids(None, "nope"), params.LabelFormat),
    (lambda: resolve_prompt_format(None, "nope"), params.PromptFormat),
    (lambda: draw_shots(None, 1, 0, "nope"), params.ShotSelection),
    (lambda: masking.layer_span(12, "nope"), params.LayerRange),
], ids=["label_format", "prompt_format", "shot_selection", "layer_range"])
def test_a_bad_value_is_told_the_params_values(check, kind):
    with pytest.raises((ValueError, PromptFormatError)) as error:
        check()
    assert str(error.value).endswith("allowed: " + params.allowed_values(kind)), str(error.value)


def test_the_checked_lists_are_the_params_types():
    assert masking.LAYER_RANGES == style.LAYER_RANGES == get_args(params.LayerRange)
    assert params.EvalParams.model_fields["layer_ranges"].annotation == tuple[params.LayerRange, ...]
    assert params.SelectParams.model_fields["assign"].annotation is params.Assign
    assert selection.Assign is params.Assign
    assert params.allowed_values(params.Activation, "|") == "gate|product"
