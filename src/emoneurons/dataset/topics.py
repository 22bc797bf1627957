"""augment: grow the seed topic list by rounds of one- or two-word alternatives (paper, B.1).

Each round asks one alternative per topic in the pool, so the pool doubles; an answer that folds
onto a topic already in the pool (case-, whitespace- and punctuation-insensitively) or that is
not a usable term is re-asked with the next sample index, up to `max_retries` times, then dropped.
The procedure is shared by the template and the LLM backends through a `Propose` function.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from tqdm.auto import tqdm

from emoneurons.backends.template import seeded_rng
from emoneurons.backends.template_topics import template_alternative
from emoneurons.io.tables import DataError
from emoneurons.text.paper_prompts.augment import AUGMENT_PROMPT

if TYPE_CHECKING:
    from emoneurons.backends.chat import ChatBackend

# propose(asks, pool): one answer per (topic, attempt) ask, None when there is no usable answer;
# `pool` is every topic known when the asks are made (the LLM prompt shows a sample of it).
Propose = Callable[[Sequence[tuple[str, int]], Sequence[str]], list[str | None]]

EXISTING_SAMPLE = 30  # topics shown in the prompt's "existing list" (the paper showed the whole pool)
MAX_WORDS = 4


def topic_key(topic: str) -> str:
    """The identity of a topic: lower case, punctuation dropped, whitespace collapsed, so that
    "U.S. Senate" / "us senate" and "Dogs" / "dogs " fold together."""
    text = re.sub(r"[-_/&+]", " ", topic.lower())  # separators become spaces ("post-war" = "post war")
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def clean_topic(topic: str) -> str:
    """A topic as written, with whitespace collapsed."""
    return " ".join(topic.split())


def parse_seed_topics(text: str) -> list[str]:
    """The seed file's topics: one a line; blank lines and `#` comments skipped."""
    lines = (clean_topic(line) for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def fold_duplicates(topics: Sequence[str]) -> list[str]:
    """Topics with near-duplicates folded onto their first spelling, order kept."""
    seen: set[str] = set()
    kept = []
    for topic in topics:
        key = topic_key(topic)
        if key and key not in seen:
            seen.add(key)
            kept.append(clean_topic(topic))
    return kept


def select_seeds(topics: Sequence[str], n_seed: int, source: str) -> list[str]:
    """The first `n_seed` unique seeds; DataError naming `source` and the numbers when too few."""
    unique = fold_duplicates(topics)
    if not unique:
        raise DataError(f"{source}: 0 topics (need at least 1)")
    if n_seed > len(unique):
        folded = len(topics) - len(unique)
        raise DataError(
            f"{source}: {len(unique)} unique topics ({len(topics)} lines, {folded} near-duplicates folded), "
            f"but augment.n_seed asks for {n_seed}; allowed: 1..{len(unique)}"
        )
    return unique[:n_seed]


def clean_alternative(answer: str | None) -> str | None:
    """An LLM's answer as a topic: first line, quotes/bullets/labels/trailing period stripped;
    None when it is empty or longer than MAX_WORDS words."""
    if answer is None:
        return None
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    text = lines[0]
    text = re.sub(r"^(?:[-*\u2022>]+|\d+[.)])\s*", "", text)  # bullet or numbering
    text = re.sub(r"^(?:new term|alternative|answer)\s*:\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"^.*?(?:→|->)\s*", "", text)  # an echoed '"Dogs" → "Cats"'
    text = text.strip().strip("*_`").strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
    text = re.sub(r"[.!]+$", "", text).strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
    text = clean_topic(text)
    if not text or not topic_key(text) or len(text.split()) > MAX_WORDS:
        return None
    return text


@dataclass
class AugmentStats:
    asked: int = 0  # questions asked, re-asks included
    duplicates_reasked: int = 0  # answers that folded onto a known topic and were asked again
    invalid_reasked: int = 0  # unusable answers (empty, too long, failed) asked again
    dropped: int = 0  # topics whose alternative was still a duplicate/unusable after max_retries
    per_round: list[int] = field(default_factory=list)  # topics added per round (round 0 = seeds)

    def as_metrics(self) -> dict:
        return asdict(self)


def augment_topics(
    seeds: Sequence[str], n_seed: int, rounds: int, propose: Propose, max_retries: int, source: str = "seeds"
) -> tuple[pl.DataFrame, AugmentStats]:
    """Seeds (near-duplicates folded, first `n_seed`) plus `rounds` rounds of alternatives: a table
    topic / round / parent (null for seeds), in the order topics were added, and the stats."""
    pool = select_seeds(seeds, n_seed, source)
    rows: list[tuple[str, int, str | None]] = [(topic, 0, None) for topic in pool]
    known = {topic_key(topic) for topic in pool}
    stats = AugmentStats(per_round=[len(pool)])
    for round_ in tqdm(range(1, rounds + 1), desc="augment rounds", unit="round", file=sys.stderr, disable=rounds < 2):
        parents = [topic for topic, _, _ in rows]
        added: dict[str, str] = {}  # parent -> its accepted alternative
        pending = list(parents)
        for attempt in range(max_retries + 1):
            if not pending:
                break
            answers = propose([(topic, attempt) for topic in pending], [*parents, *added.values()])
            stats.asked += len(pending)
            retry = []
            for topic, answer in zip(pending, answers):
                key = topic_key(answer) if answer else ""
                if key and key not in known:
                    known.add(key)
                    added[topic] = answer  # type: ignore[assignment]
                    continue
                if attempt == max_retries:
                    stats.dropped += 1
                    continue
                retry.append(topic)
                if key:
                    stats.duplicates_reasked += 1
                else:
                    stats.invalid_reasked += 1
            pending = retry
        # Keep the pool's order: each alternative follows its parent's position in this round.
        new = [(added[topic], round_, topic) for topic in parents if topic in added]
        rows += new
        stats.per_round.append(len(new))
    table = pl.DataFrame(rows, schema={"topic": pl.String, "round": pl.Int64, "parent": pl.String}, orient="row")
    return table, stats


def template_proposer(seed: int) -> Propose:
    """Seeded offline alternatives from the template bank, skipping topics already in the pool
    (the attempt picks the next free candidate)."""

    def propose(asks: Sequence[tuple[str, int]], pool: Sequence[str]) -> list[str | None]:
        known = {topic_key(topic) for topic in pool}
        taken = lambda candidate: topic_key(candidate) in known  # noqa: E731
        return [template_alternative(topic, attempt, seed, taken) for topic, attempt in asks]

    return propose


def existing_sample(pool: Sequence[str], topic: str, attempt: int, seed: int, size: int = EXISTING_SAMPLE) -> list[str]:
    """The bounded, seeded sample of the pool that the prompt lists as existing: the topic itself
    first, then up to `size - 1` others (the whole pool would make the prompt grow each round)."""
    others = [t for t in pool if t != topic]
    rng = seeded_rng("existing", seed, topic, attempt, len(pool))
    return [topic, *rng.sample(others, min(size - 1, len(others)))]


def augment_request_text(topic: str, existing: Sequence[str]) -> str:
    return AUGMENT_PROMPT.format(topic=topic, existing=", ".join(existing))


def llm_proposer(backend: ChatBackend, seed: int) -> Propose:
    """Alternatives asked of a chat backend with the paper's prompt; attempt = sample index."""
    from emoneurons.backends.chat import ChatRequest

    def propose(asks: Sequence[tuple[str, int]], pool: Sequence[str]) -> list[str | None]:
        requests = [
            ChatRequest(
                messages=(("user", augment_request_text(topic, existing_sample(pool, topic, attempt, seed))),),
                sample=attempt,
            )
            for topic, attempt in asks
        ]
        return [clean_alternative(answer) for answer in backend.complete(requests, desc="augment")]

    return propose


MAX_SEED_CHARS = 200  # a seed is a topic of a few words; a longer line is not one


def check_seed_lines(text: str, source: str) -> None:
    """DataError naming the first line longer than MAX_SEED_CHARS characters (a topic is a few words)."""
    for number, line in enumerate(text.splitlines(), 1):
        if len(line.strip()) > MAX_SEED_CHARS:
            raise DataError(
                f"{source}: line {number}: {len(line.strip())} characters, a seed topic has at most "
                f"{MAX_SEED_CHARS} (one topic of a few words a line)"
            )


def read_seeds(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
        check_seed_lines(text, str(path))
        return parse_seed_topics(text)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
