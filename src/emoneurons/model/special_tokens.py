"""The one rule for a model's end-of-turn and padding ids, used by every generator and batcher
(the engine's generate path, the hf backend, steering, counting, the cards)."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from emoneurons.model.loading import LoadedModel

# Special tokens that end a turn whatever the generation config says: a Gemma GGUF (the embedded
# Gemma 3) carries only `<eos>` as its eos id, while the hub's generation config lists `<end_of_turn>` too.
END_OF_TURN_TOKENS = ("<end_of_turn>",)


def eos_token_ids(lm: LoadedModel) -> list[int]:
    """Every id that ends a reply, sorted: those the generation config lists (an int, or a list:
    Gemma's holds `<eos>` and `<end_of_turn>`), the tokenizer's own eos, and the id of any
    END_OF_TURN_TOKENS the tokenizer has as an added (special) token."""
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, (list, tuple)) else [configured]
    added = lm.tokenizer.get_added_vocab()
    turn_ends = [added[token] for token in END_OF_TURN_TOKENS if token in added]
    return sorted({int(i) for i in (*ids, lm.tokenizer.eos_token_id, *turn_ends) if i is not None})


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id right padding fills with: the tokenizer's pad id, else 0 (any id serves, a real token
    never attends to a pad that follows it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
