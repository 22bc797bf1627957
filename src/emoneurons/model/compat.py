"""Everything mask-eval's engine needs from transformers' internals that differs between the
supported versions (model/versions.py: transformers 5.17 to 5.24), in one place.

The engine (evaluate/layer_runner.py) calls the decoder layers itself, so it depends on how a
layer takes its cache and on the attention-function registry. What changed within the range:
- transformers 5.17: a decoder layer (and its attention) takes the cache as `past_key_values`;
  5.24: as `cache` (`past_key_values` still accepted, deprecated until 5.40). A wrong name is
  swallowed by the layer's **kwargs silently: the layer then runs with no cache at all (no prefix
  keys/values), which is what broke every engine test on 5.17. The name is read from the layer's
  own signature, not from the version number.
Unchanged within the range, and relied on (tests/unit/model/test_families.py pins them on both ends, and
tests/project/test_lower_end.py reruns them at 5.17): `AttentionInterface.register`, attention modules
reading the private `config._attn_implementation` at each call and passing their **kwargs on to the
attention function, a layer returning a tensor (before 5.x: a tuple), rotary embeddings called as
(x, position_ids[, layer_type]) and reading only x's device and dtype.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

from torch import Tensor, nn

CACHE_KEYWORDS = ("cache", "past_key_values")  # newest first


@cache
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


@contextmanager
def attention_implementation(config, name: str | None) -> Iterator[None]:
    """The model's attention function switched to the registered `name` while open (None:
    unchanged); attention modules read the private `config._attn_implementation` at each call."""
    before = config._attn_implementation
    if name is not None:
        config._attn_implementation = name
    try:
        yield
    finally:
        if name is not None:
            config._attn_implementation = before


def layer_output(output: Tensor | tuple) -> Tensor:
    """A decoder layer's hidden-state output (older layer APIs return (hidden, ...))."""
    return output[0] if isinstance(output, tuple) else output
