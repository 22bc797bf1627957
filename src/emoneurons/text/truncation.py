"""The one rule for dialogues longer than the model's context (model.max_length): a dialogue's
own tokens past its budget are cut from the end (the prompt around it is never cut), and every
cut is counted, so the stage reports how many dialogues lost how many tokens, never silently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from transformers import PreTrainedTokenizerBase


@dataclass
class Truncation:
    """What the rule cut. `budget`: dialogue tokens allowed; `max_length`: the model.max_length it
    came from; `dialogues`: how many were cut; `tokens_cut`: in all; `longest_cut`: the most from one."""

    max_length: int
    budget: int
    dialogues: int = 0
    tokens_cut: int = 0
    longest_cut: int = 0

    def add(self, cut: int) -> None:
        if cut > 0:
            self.dialogues += 1
            self.tokens_cut += cut
            self.longest_cut = max(self.longest_cut, cut)

    def merge(self, other: Truncation) -> None:
        """Add what `other` (the same rule on other dialogues) cut."""
        self.dialogues += other.dialogues
        self.tokens_cut += other.tokens_cut
        self.longest_cut = max(self.longest_cut, other.longest_cut)

    def merged(self, other: Truncation) -> Truncation:
        """This cut and `other` (of the same rule: another part of the same dialogues) as one."""
        return Truncation(self.max_length, self.budget, self.dialogues + other.dialogues, self.tokens_cut + other.tokens_cut,
                          max(self.longest_cut, other.longest_cut))

    def record(self) -> dict[str, int]:
        return asdict(self)

    def describe(self, total: int | None, stage: str) -> str:
        """One line for the stage's log; `total`: the dialogues the rule saw (None where the stage
        does not know it, as mask-eval, whose cut counts calibration dialogues beside the test ones)."""
        of = f" of {total}" if total is not None else ""
        return (
            f"{stage}: {self.dialogues}{of} dialogues longer than their budget of {self.budget} tokens "
            f"(model.max_length {self.max_length}) were cut at the end: {self.tokens_cut} tokens in all, "
            f"at most {self.longest_cut} from one"
        )


# Dialogues tokenized per call: their ids and offsets as Python objects take ~100 bytes a token,
# so 14k test dialogues at once held ~350 MB.
CUT_SLICE = 1024


def cut_dialogues(tokenizer: PreTrainedTokenizerBase, dialogues: Sequence[str], truncation: Truncation) -> list[str]:
    """Each dialogue with its tokens past `truncation.budget` cut off (the text up to the end of
    its last kept token), the cuts added to `truncation`; short dialogues come back unchanged.
    Tokenized CUT_SLICE dialogues at a time (each dialogue's tokens do not depend on the others)."""
    kept: list[str] = []
    for start in range(0, len(dialogues), CUT_SLICE):
        kept += _cut(tokenizer, dialogues[start : start + CUT_SLICE], truncation)
    return kept


def _cut(tokenizer: PreTrainedTokenizerBase, dialogues: Sequence[str], truncation: Truncation) -> list[str]:
    encoded = tokenizer(list(dialogues), add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    kept = []
    for index, (text, ids) in enumerate(zip(dialogues, encoded["input_ids"])):
        cut = len(ids) - truncation.budget
        truncation.add(cut)
        if cut <= 0:
            kept.append(text)
        elif tokenizer.is_fast:
            kept.append(text[: encoded["offset_mapping"][index][truncation.budget - 1][1]])
        else:
            kept.append(tokenizer.decode(ids[: truncation.budget]))
    return kept
