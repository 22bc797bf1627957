"""Everything mask-eval's engine needs from transformers' internals that differs between the
supported versions (model/versions.py: transformers 5.17 to 5.24), in one place.

The engine (evaluate/layer_runner.py) calls the decoder layers itself, so it depends on how a
layer takes its cache and on the attention-function registry. What changed within the range:
- transformers 5.17: a decoder layer (and its attention) takes the cache as `past_key_values`;
  5.24: as `cache` (`past_key_values` still accepted, deprecated until 5.40). A wrong name is
  swallowed by the layer's **kwargs silently: the layer then runs with no cache at all (no prefix
  keys/values), which is what broke every engine test on 5.17. The name is read from the layer's
  own signature, not from the version number.
Unchanged within the range, and relied on (tests/test_families.py pins them on both ends):
`AttentionInterface.register`, attention modules reading `config._attn_implementation` at each call
and passing their **kwargs on to the attention function, the layer returning a tensor (older
layers returned a tuple), rotary embeddings called as (x, position_ids[, layer_type]).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache

from torch import nn

CACHE_KEYWORDS = ("cache", "past_key_values")  # newest first


@lru_cache(maxsize=None)
def _cache_keyword_of(layer_class: type) -> str:
    parameters = inspect.signature(layer_class.forward).parameters
    for name in CACHE_KEYWORDS:
        if name in parameters:
            return name
    raise TypeError(f"{layer_class.__name__}.forward takes none of {', '.join(CACHE_KEYWORDS)}: "
                    "the engine cannot hand this transformers version's decoder layer a cache")


def cache_keyword(layer: nn.Module) -> str:
    """The keyword a decoder layer takes its key/value cache by (`cache` or `past_key_values`)."""
    return _cache_keyword_of(type(layer))


def register_attention(name: str, function: Callable) -> bool:
    """Register `function` under `name` in transformers' AttentionInterface; False where this
    transformers has no such registry (the engine then takes its concatenating path)."""
    try:
        from transformers import AttentionInterface
    except ImportError:
        return False
    AttentionInterface.register(name, function)
    return True
