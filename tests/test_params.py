"""params.yaml validation: every bad value fails before any work, in one line naming the key."""

from pathlib import Path

import pytest
import yaml

from emoneurons.params import ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.model.id == "embedded"
    assert [j.name for j in params.filter.judges] == ["lexicon"]  # no embedded LLM judge at chance (README)
    assert 1 <= params.filter.min_agree <= 1 + len(params.filter.judges)


@pytest.mark.parametrize(
    ("raw", "key", "allowed"),
    [
        ({"select": {"top_rate": 0.7}}, "select.top_rate", "0.5"),
        ({"select": {"top_rate": "lots"}}, "select.top_rate", "number"),
        ({"split": {"test_fraction": 1.5}}, "split.test_fraction", "less than 1"),
        ({"split": {"test_fraction": 0}}, "split.test_fraction", "greater than 0"),
        ({"generate": {"emotions": ["anger", "joy"]}}, "generate.emotions", "happiness"),
        ({"augment": {"n_seed": -3}}, "augment.n_seed", "greater than 0"),
        ({"generate": {"per_pair": -1}}, "generate.per_pair", "greater than 0"),
        ({"generate": {"backend": "gpt"}}, "generate.backend", "'template', 'openai' or 'hf'"),
        ({"filter": {"judges": [{"name": "x", "backend": "claude"}]}}, "filter.judges.0.backend", "'lexicon', 'hf' or 'openai'"),
        ({"filter": {"min_agree": 4}}, "filter", "between 1 and 3"),
        ({"eval": {"ratios": [0.01, 0.9]}}, "eval.ratios.1", "0.5"),
        ({"eval": {"layer_ranges": ["top", "upper"]}}, "eval.layer_ranges.1", "'bottom', 'middle', 'top' or 'all'"),
        ({"count": {"positions": "first"}}, "count.positions", "'all' or 'last'"),
        ({"model": {"batch_size": 0}}, "model.batch_size", "greater than 0"),
        ({"selct": {"top_rate": 0.01}}, "selct", "unknown key"),
        ({"steer": {"alphas": [0, -1]}}, "steer.alphas.1", "greater than or equal to 0"),
        ({"steer": {"alphas": [2, 101]}}, "steer.alphas.1", "less than or equal to 100"),
        ({"steer": {"alphas": []}}, "steer.alphas", "at least 1 item"),
        ({"cards": {"top_neurons": 0}}, "cards.top_neurons", "greater than 0"),
        ({"eval": {"prompt_format": "xml"}}, "eval.prompt_format", "'chat', 'plain' or 'auto'"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_key(raw, key, allowed):
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "\n" not in message
    assert f": {key}:" in message
    assert allowed in message


def test_load_params_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("select: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


def test_a_stage_reads_only_the_keys_it_declares(tmp_path):
    from emoneurons.params import UndeclaredParamError, load_stage_params

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"select": {"top_rate": 0.02}, "eval": {"shots": 3}}))
    settings = load_stage_params(path, ("model", "select.top_rate", "eval"))
    assert settings.select.top_rate == 0.02
    assert settings.eval.shots == 3 and settings.model.id == "embedded"
    with pytest.raises(UndeclaredParamError, match=r"'select.filter_rate' is read but not declared .*dvc.yaml"):
        settings.select.filter_rate
    with pytest.raises(UndeclaredParamError, match=r"'augment' is read but not declared"):
        settings.augment
    assert isinstance(UndeclaredParamError("x"), ParamsError)  # stages print it in one line


def test_a_declared_key_that_params_yaml_lacks_is_refused(tmp_path):
    from emoneurons.params import load_stage_params

    path = tmp_path / "params.yaml"
    path.write_text("{}\n")
    with pytest.raises(ParamsError, match="'select.top_rat' is not a key of params.yaml"):
        load_stage_params(path, ("select.top_rat",))
