"""The template backend's dialogues. A dialogue = a shape (an emotion-neutral frame: who tells,
how it opens) filled with emotion-specific lines: the event, reactions, details and a closing.
The emotion is carried by situations, verbs and exclamations; no line names an emotion
(FORBIDDEN_WORDS). The lines are package data: template_data/dialogues.json."""

from __future__ import annotations

from emoneurons.backends.template import seeded_rng, template_words
from emoneurons.emotions import EMOTIONS

FORBIDDEN_WORDS = frozenset(
    EMOTIONS + ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "surprising")
)

_WORDS = template_words("template_data/dialogues.json")
# Where the topic sits in the story; every context names it, so the event line mentions it.
CONTEXTS: tuple[str, ...] = _WORDS["CONTEXTS"]
PEOPLE: tuple[str, ...] = _WORDS["PEOPLE"]
# Shapes: (openers with the teller's cue, who tells the story). `{ctx}` is the seeded context.
SHAPES: dict[str, dict[str, object]] = _WORDS["SHAPES"]
# Per emotion: events (the teller says what happened), reactions (the listener), details (the teller
# goes on), closings (either). {ctx} = a context naming the topic, {person} = someone.
BANKS: dict[str, dict[str, tuple[str, ...]]] = _WORDS["BANKS"]

MIXED_SHARE = 0.1  # share of template dialogues given lines of a second emotion (filter fodder)
MIN_TURNS, MAX_TURNS = 4, 12


def _fill(line: str, topic: str, ctx: str, person: str) -> str:
    text = line.replace("{ctx}", ctx).replace("{person}", person).replace("{topic}", topic)
    # A line that opens with a context ("my project on ...") or a person starts with a capital.
    return text[:1].upper() + text[1:]


def template_dialogue(
    topic: str, emotion: str, k: int, seed: int, max_turns: int
) -> tuple[str, str | None]:
    """The k-th template dialogue about `topic` conveying `emotion` in MIN_TURNS..max_turns turns,
    and the second emotion whose cues were mixed in (None for most; about MIXED_SHARE, seeded)."""
    if emotion not in BANKS:
        raise ValueError(f"unknown emotion {emotion!r}; allowed: {', '.join(EMOTIONS)}")
    rng = seeded_rng("generate", seed, topic, emotion, k)
    bank = BANKS[emotion]
    shape = SHAPES[rng.choice(sorted(SHAPES))]
    opener, reply = rng.choice(shape["openers"])  # type: ignore[arg-type]
    ctx = rng.choice(CONTEXTS).replace("{topic}", topic)
    person = rng.choice(PEOPLE)
    mixed = rng.choice([e for e in EMOTIONS if e != emotion]) if rng.random() < MIXED_SHARE else None

    head = [opener, reply]
    if shape["teller"] == "B":
        # B took the story in the reply; a short prompt from A lets B tell the event.
        head.append(rng.choice(("Go on.", "What happened?", "Tell me everything.", "I'm all ears.")))
    head.append(rng.choice(bank["event"]))
    # The middle alternates a listener reaction and a teller detail; a closing ends it.
    room = max_turns - len(head) - 1
    middle = rng.randint(min(2, room) if mixed else max(0, MIN_TURNS - len(head) - 1), room)
    reactions = rng.sample(bank["reaction"], len(bank["reaction"]))
    details = rng.sample(bank["detail"], len(bank["detail"]))
    roles = ["reaction" if i % 2 == 0 else "detail" for i in range(middle)]
    body = [(reactions if role == "reaction" else details)[i // 2] for i, role in enumerate(roles)]
    if mixed and not middle:
        mixed = None  # a short dialogue with no middle has no room for a second emotion
    if mixed:
        # The last (up to) two middle lines carry the other emotion, in the same roles.
        for i in range(max(0, middle - 2), middle):
            body[i] = rng.choice(BANKS[mixed][roles[i]])
    lines = [*head, *body, rng.choice(bank["closing"])]
    text = [_fill(line, topic, ctx, person) for line in lines]
    return "\n".join(f"{'AB'[i % 2]}: {line}" for i, line in enumerate(text)), mixed
