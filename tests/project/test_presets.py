"""presets/*.yaml: the paper's runs as complete params files that params.py accepts, with the
paper's sizes, and keys only by environment variable name."""

from __future__ import annotations

import pytest

from emoneurons.params import load_params
from helpers.stage_runner import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_the_three_paper_presets_exist():
    assert [p.name for p in PRESETS] == ["paper-70b-node.yaml", "paper-8b-1gpu.yaml", "paper-8b-multinode.yaml"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_validates_with_the_papers_sizes(path):
    params = load_params(path)
    assert params.model.id.startswith("meta-llama/Llama-3.1-") and params.model.dtype == "auto"
    assert params.model.device == ("auto" if "70b" in path.name else "cuda")
    assert (params.augment.backend, params.augment.n_seed, params.augment.rounds) == ("openai", 302, 4)
    assert (params.generate.backend, params.generate.per_pair) == ("openai", 10)
    assert [j.backend for j in params.filter.judges] == ["openai"] * 3 and params.filter.min_agree == 3
    assert params.split.test_fraction == 0.05
    assert (params.eval.method, params.eval.shots, params.eval.calibrate) == ("generate", 0, "none")
    text = path.read_text()
    assert "api_key:" not in text  # keys come from the environment only (api_key_env)
