"""The one rule for a model's end-of-turn and padding ids, used by every generator and batcher
(the engine's generate path, the hf backend, steering, counting, the cards)."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from emoneurons.model.loading import LoadedModel


def eos_token_ids(lm: LoadedModel) -> list[int]:
    """Every id that ends a reply, sorted: those the generation config lists (an int, or a list:
    Gemma's holds `<eos>` and `<end_of_turn>`) and the tokenizer's own eos."""
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, (list, tuple)) else [configured]
    return sorted({int(i) for i in (*ids, lm.tokenizer.eos_token_id) if i is not None})


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id right padding fills with: the tokenizer's pad id, else 0 (any id serves, a real token
    never attends to a pad that follows it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
