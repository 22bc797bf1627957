"""The dialogue format of the data set: two speakers in `A: ...` / `B: ...` lines (paper, B.2),
the stable dialogue id, the data/dialogues.parquet table, and the check that turns a model's
reply into such a dialogue (repaired) or says why it must be re-asked. generate writes it; filter
reads it back from imported data sets (EmoPrism) without depending on the generation prompt."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

import polars as pl

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


def dialogue_table(rows: Sequence[tuple[str, str, int, str]], backend: str, model: str) -> pl.DataFrame:
    """(topic, theme, k, dialogue) rows as the data/dialogues.parquet table."""
    records = [
        (dialogue_id(backend, model, topic, theme, k), topic, theme, text, backend, model)
        for topic, theme, k, text in rows
    ]
    return pl.DataFrame(records, schema=DIALOGUE_SCHEMA, orient="row")


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
