"""generate: one dialogue per (topic, emotion, k), two speakers in `A: ...` / `B: ...` lines
(paper, B.2). The template backend composes them offline; an LLM backend is asked the paper's
prompt, and its reply is repaired (trivial format problems) or rejected and re-asked."""

from __future__ import annotations

import hashlib
import json
import re
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
from emoneurons.paper_prompts.generate import GENERATE_PROMPT

if TYPE_CHECKING:
    from emoneurons.backends.chat import ChatBackend

DIALOGUE_SCHEMA = {
    "id": pl.String, "topic": pl.String, "theme": pl.String, "dialogue": pl.String,
    "backend": pl.String, "model": pl.String,
}
# A reply longer than this is not the short dialogue asked for (the paper's run a few hundred
# characters; 20,000 is ~5,000 tokens, past any default context here), whatever it holds.
MAX_REPLY_CHARS = 20_000
CUT_OFF_REASON = "cut off at the token limit"  # finish_reason "length": the reply stops mid-turn
# Speaker names a reply may use for something that is not a speaker.
NOT_SPEAKERS = frozenset(("emotion", "topic", "theme", "label", "mood", "setting", "scene", "narrator", "title", "note", "dialogue", "tone"))
_SPEAKER_LINE = re.compile(r"^(?P<name>[A-Za-z][\w .'-]{0,30}?)\s*:\s*(?P<text>.*)$")
# A turn run on after the previous one's end punctuation: "A: Hi. B: Hello."
_INLINE_TURN = re.compile(r"(?<=[.!?\"'\u201d\u2026])\s+(?=[AB]:\s)")


def dialogue_id(backend: str, model: str, topic: str, theme: str, k: int) -> str:
    """A stable id: hash of what makes the dialogue (16 hex characters)."""
    key = json.dumps([backend, model, topic, theme, k], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def dialogue_plan(topics: Sequence[str], emotions: Sequence[str], per_pair: int) -> list[tuple[str, str, int]]:
    """Every (topic, emotion, k) to generate, topic-major, emotions in the paper's order."""
    ordered = [e for e in EMOTIONS if e in set(emotions)]
    return [(topic, emotion, k) for topic in topics for emotion in ordered for k in range(per_pair)]


def dialogue_table(rows: Sequence[tuple[str, str, int, str]], backend: str, model: str) -> pl.DataFrame:
    """(topic, theme, k, dialogue) rows as the data/dialogues.parquet table."""
    records = [
        (dialogue_id(backend, model, topic, theme, k), topic, theme, text, backend, model)
        for topic, theme, k, text in rows
    ]
    return pl.DataFrame(records, schema=DIALOGUE_SCHEMA, orient="row")


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
    topics: Sequence[str], emotions: Sequence[str], per_pair: int, seed: int, max_turns: int = 12
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


def _strip_markup(line: str) -> str:
    line = line.strip()
    line = re.sub(r"^(?:\d+[.)]|[-*\u2022])\s+", "", line)  # "1. A: ..." / "- A: ..."
    line = line.replace("**", "").replace("__", "")  # "**A:** ..." / "**A**: ..."
    return line.strip()


def check_reply(text: str) -> tuple[str | None, str]:
    """(dialogue, "ok") for a usable reply, repaired; (None, reason) when it must be re-asked.
    Repairs: whitespace, blank lines, code fences, numbering/bullets, bold markers, turns run
    together on one line, and two named speakers who strictly alternate (renamed A and B).
    Rejects: a reply over MAX_REPLY_CHARS characters, an empty reply, narration or other non-turn lines, label lines, one speaker only,
    more than two speakers, named speakers who do not alternate, an empty turn."""
    if len(text) > MAX_REPLY_CHARS:
        return None, "too long"
    lines = [_strip_markup(line) for line in text.replace("\r", "").split("\n")]
    lines = [line for line in lines if line and not line.startswith("```")]
    # The prompt shows the format on one line; split "A: hi B: hello" into turns.
    lines = [part for line in lines for part in (_INLINE_TURN.split(line) if re.match(r"[AB]:\s", line) else [line])]
    if not lines:
        return None, "empty"
    turns = []
    for line in lines:
        match = _SPEAKER_LINE.match(line)
        # A "name" of four or more words is a sentence ("Here is the dialogue:"), not a speaker.
        if not match or len(match.group("name").split()) > 3:
            return None, "narration"
        name, said = match.group("name").strip(), match.group("text").strip()
        if name.lower() in NOT_SPEAKERS:
            return None, "label"
        if not said:
            return None, "empty turn"
        turns.append((name, said))
    names = list(dict.fromkeys(name for name, _ in turns))
    if len(names) == 1:
        return None, "one speaker"
    if len(names) > 2:
        return None, "more than two speakers"
    if set(names) != {"A", "B"}:
        alternating = all(turns[i][0] != turns[i + 1][0] for i in range(len(turns) - 1))
        if not alternating:
            return None, "named speakers do not alternate"
        rename = {names[0]: "A", names[1]: "B"}
        turns = [(rename[name], said) for name, said in turns]
    return "\n".join(f"{name}: {' '.join(said.split())}" for name, said in turns), "ok"


def parse_dialogue(text: str) -> str | None:
    """A reply as an `A: ...` / `B: ...` dialogue, repaired; None when it must be rejected."""
    return check_reply(text)[0]


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
