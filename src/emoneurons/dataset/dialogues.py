"""generate: one dialogue per (topic, emotion, k), two speakers in `A: ...` / `B: ...` lines
(paper, B.2). The template backend composes them offline; an LLM backend is asked the paper's
prompt, and its reply is repaired (trivial format problems) or rejected and re-asked."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import polars as pl
from tqdm.auto import tqdm

from emoneurons.backends.template import TEMPLATE
from emoneurons.backends.template_dialogues import template_dialogue
from emoneurons.emotions import EMOTIONS
from emoneurons.text.dialogue_format import CUT_OFF_REASON, check_reply, dialogue_table
from emoneurons.text.paper_prompts.generate import GENERATE_PROMPT

if TYPE_CHECKING:
    from emoneurons.backends.chat import ChatBackend

def dialogue_plan(topics: Sequence[str], emotions: Sequence[str], per_pair: int) -> list[tuple[str, str, int]]:
    """Every (topic, emotion, k) to generate, topic-major, emotions in the paper's order."""
    ordered = [e for e in EMOTIONS if e in set(emotions)]
    return [(topic, emotion, k) for topic in topics for emotion in ordered for k in range(per_pair)]


@dataclass
class GenerateStats:
    planned: int = 0
    generated: int = 0
    asked: int = 0  # requests sent (re-asks included); 0 for the template
    repaired: int = 0  # accepted after a trivial repair
    reasked: int = 0
    dropped: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # why replies were rejected
    mixed_cues: int = 0  # template only: dialogues given lines of a second emotion

    def as_metrics(self) -> dict:
        return asdict(self)


def template_dialogues(
    topics: Sequence[str], emotions: Sequence[str], per_pair: int, seed: int, max_turns: int
) -> tuple[pl.DataFrame, GenerateStats]:
    plan = dialogue_plan(topics, emotions, per_pair)
    stats = GenerateStats(planned=len(plan))
    rows = []
    for topic, emotion, k in tqdm(plan, desc="generate (template)", unit="dialogue", file=sys.stderr, mininterval=1):
        text, mixed = template_dialogue(topic, emotion, k, seed, max_turns)
        stats.mixed_cues += mixed is not None
        rows.append((topic, emotion, k, text))
    stats.generated = len(rows)
    return dialogue_table(rows, TEMPLATE, TEMPLATE), stats


def generate_request_text(topic: str, emotion: str) -> str:
    return GENERATE_PROMPT.format(topic=topic, emotion=emotion)


def llm_dialogues(
    topics: Sequence[str], emotions: Sequence[str], per_pair: int, backend: ChatBackend, max_retries: int
) -> tuple[pl.DataFrame, GenerateStats]:
    """Dialogues asked of a chat backend with the paper's prompt. The k-th dialogue of a pair is
    sample k; its r-th re-ask is sample k + r * per_pair, so every request is distinct (and cached)."""
    from emoneurons.backends.chat import ChatRequest

    plan = dialogue_plan(topics, emotions, per_pair)
    stats = GenerateStats(planned=len(plan))
    rejected: Counter[str] = Counter()
    accepted: dict[int, str] = {}
    pending = list(range(len(plan)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        requests = [
            ChatRequest(
                messages=(("user", generate_request_text(plan[i][0], plan[i][1])),),
                sample=plan[i][2] + attempt * per_pair,
            )
            for i in pending
        ]
        answers = backend.complete(requests, desc=f"generate (try {attempt + 1})")
        cut_off = getattr(backend, "last_cut_off", set())  # answers stopped by the token limit
        stats.asked += len(requests)
        retry = []
        for position, (i, answer) in enumerate(zip(pending, answers)):
            if answer is None:
                dialogue, reason = None, CUT_OFF_REASON if position in cut_off else "no answer"
            else:
                dialogue, reason = check_reply(answer)
            if dialogue is not None:
                accepted[i] = dialogue
                stats.repaired += dialogue != answer.strip()  # type: ignore[union-attr]
                continue
            rejected[reason] += 1
            if attempt == max_retries:
                stats.dropped += 1
            else:
                retry.append(i)
                stats.reasked += 1
        pending = retry
    rows = [(*plan[i][:3], accepted[i]) for i in sorted(accepted)]
    stats.generated = len(rows)
    stats.rejected = dict(sorted(rejected.items()))
    return dialogue_table(rows, backend.name, backend.model), stats
