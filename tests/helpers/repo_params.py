"""Params for tests: the real params.yaml with a few keys overridden. params.py has no defaults
(params.yaml is the one source), so a test states only the keys it is about and takes every
other value from the file the default run uses."""

from __future__ import annotations

import copy
from functools import cache

import yaml
from pydantic import BaseModel

from emoneurons.params import Params, parse_params
from helpers.stage_runner import REPO

REPO_PARAMS = REPO / "params.yaml"


@cache
def _repo_params() -> dict:
    return yaml.safe_load(REPO_PARAMS.read_text())


def merged(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` merged in: mappings key by key, any other value replaced whole."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def params_dict(overrides: dict | None = None) -> dict:
    """params.yaml as a mapping, with `overrides` merged in (not validated: bad values are allowed)."""
    return merged(_repo_params(), overrides or {})


def params_with(overrides: dict | None = None) -> Params:
    """params.yaml with `overrides` merged in, validated."""
    return parse_params(params_dict(overrides))


def params_yaml(overrides: dict | None = None) -> str:
    """The text of a params.yaml: the real one with `overrides` merged in."""
    return yaml.safe_dump(params_dict(overrides), sort_keys=False)


def section(key: str, **values) -> BaseModel:
    """One validated section of params.yaml (`"eval"`, `"generate.openai"`) with `values` replaced."""
    overrides: dict = values
    for part in reversed(key.split(".")):
        overrides = {part: overrides}
    value = params_with(overrides)
    for part in key.split("."):
        value = getattr(value, part)
    return value
