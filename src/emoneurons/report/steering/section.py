"""The report's "beyond ablation" section: a link to the neuron cards page and the steering
results (reports/cards/cards.json, reports/steer/steer.json) as a table and a figure."""

from __future__ import annotations

from emoneurons.emotions import EMOTIONS
from emoneurons.io.cards_file import CardsFile
from emoneurons.io.steer_file import SteeredEmotion, SteerFile
from emoneurons.report.document.blocks import Block, Heading, Image, Paragraph, Table


def _signed(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if value is None else f"{scale * value:+.{digits}f}"


def _number(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if value is None else f"{scale * value:.{digits}f}"


def _controls(entry: SteeredEmotion, alpha: float, key: str) -> float | None:
    """The mean over the control draws at `alpha` of a shift (None when no draw has it)."""
    values = [v for c in entry.controls_at(alpha) if (v := c.value(key)) is not None]
    return sum(values) / len(values) if values else None


def _broke(shift: str, broke: bool) -> str:
    return f"{shift} (text broke)" if broke else shift


def beyond_ablation_blocks(cards: CardsFile, steer: SteerFile) -> list[Block]:
    """Heading, the cards link, the steering table and figure (reports/figures/steering.png)."""
    n_cards = sum(len(v.cards) for v in cards.emotions.values())
    without = [e for e in EMOTIONS if not cards.cards_of(e)]
    blocks: list[Block] = [
        Heading("Beyond ablation: neuron cards and steering", 2),
        Paragraph(
            f"[Neuron cards](cards/index.html): {n_cards} cards, up to {cards.top_neurons} per emotion, each with "
            f"P per emotion, entropy, the {cards.contexts} train dialogues where the neuron's gate peaks highest "
            "(the token highlighted in its context) and the tokens it fires on most often relative to their frequency"
            + (f"; no selected neurons, so no cards, for {', '.join(without)}." if without else ".")
        ),
    ]
    judges = steer.judge_names()  # steer.json before judges: none
    rule = steer.coherence  # steer.json before coherence: no coherence columns
    rows = []
    for emotion in EMOTIONS:
        entry = steer.emotions.get(emotion)
        for step in entry.steered if entry else ():
            alpha = step.alpha
            judged = []
            for name in judges:
                controls = [c.judges[name]["share_shift"] for c in entry.controls_at(alpha)]
                judged += [_signed(step.judges[name]["share_shift"], 100, 1),
                           _signed(sum(controls) / len(controls) if controls else None, 100, 1)]
            coherence = []
            steered_broke = control_broke = False
            if rule:
                steered_broke = step.text_broke()
                control_broke = any(c.text_broke() for c in entry.controls_at(alpha))
                coherence = [_signed(step.value("coherence.logp_per_token_shift")),
                             _signed(_controls(entry, alpha, "coherence.logp_per_token_shift")),
                             _signed(step.value("coherence.repeated_share_shift"), 100, 1),
                             _signed(_controls(entry, alpha, "coherence.repeated_share_shift"), 100, 1)]
            rows.append((emotion, str(entry.n_neurons), f"{alpha:g}",
                         _broke(_signed(step.share_shift, 100, 1), steered_broke),
                         _broke(_signed(_controls(entry, alpha, "share_shift"), 100, 1), control_broke),
                         _signed(step.logp_shift), _signed(_controls(entry, alpha, "logp_shift")), *judged, *coherence))
    classifier = steer.classifier
    blocks.append(Paragraph(
        f"Steering: each emotion's neurons (select.top_rate {steer.top_rate:g}) scaled by alpha while the model "
        f"replies greedily to {len(steer.prompts)} neutral prompts (`data/steer/prompts.txt`, at most "
        f"{steer.max_new_tokens} new tokens); the replies are classified by mask-eval's classifier "
        f"(`{classifier['method']}`, {classifier['shots']} shot(s) per emotion, calibration `{classifier['calibrate']}`), "
        "unmodified. Shifts are against the unmodified model's replies to the same prompts; the control scales the "
        f"same number of random neurons per layer by the same alpha ({steer.control_draws} draw(s), mean). "
        + (f"The filter's judges ({', '.join(f'`{name}`' for name in judges)}) label the same replies: their columns are the "
           "share of replies each labels with the steered emotion, minus unmodified. " if judges else "")
        + (f"Coherence of the same replies: the unmodified model's mean log-likelihood per token of each reply, "
           f"teacher-forced after its prompt (nats; the unmodified replies: "
           f"{_number(steer.unmodified['coherence']['logp_per_token'])}), and the share of its word "
           f"{rule['ngram']}-grams that repeat an earlier one (unmodified: "
           f"{_number(steer.unmodified['coherence']['repeated_share'], 100, 1)} %), each minus the unmodified "
           "replies'. A shift reads **(text broke)** when its replies' log-likelihood per token is more than "
           f"{rule['broke_logp_drop']:g} below the unmodified replies' or their repeated {rule['ngram']}-gram share more "
           f"than {100 * rule['broke_repeat_rise']:g} pp above it (steer.broke_logp_drop, steer.broke_repeat_rise; a "
           "control when any of its draws broke): such a shift is the classifier labelling broken text, not the model "
           "expressing an emotion. " if rule else "")
        + "Replies, labels and log-probabilities are in `reports/steer/steer.json`."
    ))
    if rows:
        judge_columns = tuple(column for name in judges for column in (f"judge {name} (pp)", f"judge {name} control (pp)"))
        coherence_columns = ("Δ log-lik/token", "control Δ log-lik/token", f"Δ repeated {rule['ngram']}-grams (pp)",
                             "control Δ repeated (pp)") if rule else ()
        blocks.append(Table(
            ("steered", "neurons", "alpha", "share shift (pp)", "control (pp)", "Δ log p", "control Δ log p", *judge_columns,
             *coherence_columns),
            tuple(rows), "Steering: share of replies labelled with the steered emotion and mean log p of it, minus unmodified"
            + ("; the same replies' coherence, minus unmodified" if rule else ""),
            (False, True, True, True, True, True, True, *(True for _ in (*judge_columns, *coherence_columns))),
        ))
        blocks.append(Image("steering", "Steering: shift vs alpha, one line per emotion, random-neuron controls dashed"))
    else:
        blocks.append(Paragraph("No emotion has selected neurons at this top_rate: nothing was steered."))
    return blocks
