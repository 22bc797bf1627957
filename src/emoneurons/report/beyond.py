"""The report's "beyond ablation" section: a link to the neuron cards page and the steering
results (reports/cards/cards.json, reports/steer/steer.json) as a table and a figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.report.document import Block, Heading, Image, Paragraph, Table


def _signed(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if value is None else f"{scale * value:+.{digits}f}"


def _controls(entry: Mapping[str, Any], alpha: float, key: str) -> float | None:
    values = [c[key] for c in entry.get("controls", []) if c["alpha"] == alpha and c[key] is not None]
    return sum(values) / len(values) if values else None


def beyond_ablation_blocks(cards_json: Mapping[str, Any], steer_json: Mapping[str, Any]) -> list[Block]:
    """Heading, the cards link, the steering table and figure (reports/figures/steering.png)."""
    n_cards = sum(len(v["cards"]) for v in cards_json["emotions"].values())
    without = [e for e in EMOTIONS if not cards_json["emotions"].get(e, {}).get("cards")]
    blocks: list[Block] = [
        Heading("Beyond ablation: neuron cards and steering", 2),
        Paragraph(
            f"[Neuron cards](cards/index.html): {n_cards} cards, up to {cards_json['top_neurons']} per emotion, each with "
            f"P per emotion, entropy, the {cards_json['contexts']} train dialogues where the neuron's gate peaks highest "
            "(the token highlighted in its context) and the tokens it fires on most often relative to their frequency"
            + (f"; no selected neurons, so no cards, for {', '.join(without)}." if without else ".")
        ),
    ]
    judges = [j["name"] for j in steer_json.get("judges", [])]  # steer.json before judges: none
    rows = []
    for emotion in EMOTIONS:
        entry = steer_json["emotions"].get(emotion, {})
        for step in entry.get("steered", []):
            alpha = step["alpha"]
            judged = []
            for name in judges:
                controls = [c["judges"][name]["share_shift"] for c in entry.get("controls", []) if c["alpha"] == alpha]
                judged += [_signed(step["judges"][name]["share_shift"], 100, 1),
                           _signed(sum(controls) / len(controls) if controls else None, 100, 1)]
            rows.append((emotion, str(entry["n_neurons"]), f"{alpha:g}",
                         _signed(step["share_shift"], 100, 1), _signed(_controls(entry, alpha, "share_shift"), 100, 1),
                         _signed(step["logp_shift"]), _signed(_controls(entry, alpha, "logp_shift")), *judged))
    classifier = steer_json["classifier"]
    blocks.append(Paragraph(
        f"Steering: each emotion's neurons (select.top_rate {steer_json['top_rate']:g}) scaled by alpha while the model "
        f"replies greedily to {len(steer_json['prompts'])} neutral prompts (`data/steer/prompts.txt`, at most "
        f"{steer_json['max_new_tokens']} new tokens); the replies are classified by mask-eval's classifier "
        f"(`{classifier['method']}`, {classifier['shots']} shot(s) per emotion, calibration `{classifier['calibrate']}`), "
        "unmodified. Shifts are against the unmodified model's replies to the same prompts; the control scales the "
        f"same number of random neurons per layer by the same alpha ({steer_json['control_draws']} draw(s), mean). "
        + (f"The filter's judges ({', '.join(f'`{name}`' for name in judges)}) label the same replies: their columns are the "
           "share of replies each labels with the steered emotion, minus unmodified. " if judges else "")
        + "Replies, labels and log-probabilities are in `reports/steer/steer.json`."
    ))
    if rows:
        judge_columns = tuple(column for name in judges for column in (f"judge {name} (pp)", f"judge {name} control (pp)"))
        blocks.append(Table(
            ("steered", "neurons", "alpha", "share shift (pp)", "control (pp)", "Δ log p", "control Δ log p", *judge_columns),
            tuple(rows), "Steering: share of replies labelled with the steered emotion and mean log p of it, minus unmodified",
            (False, True, True, True, True, True, True, *(True for _ in judge_columns)),
        ))
        blocks.append(Image("steering", "Steering: shift vs alpha, one line per emotion, random-neuron controls dashed"))
    else:
        blocks.append(Paragraph("No emotion has selected neurons at this top_rate: nothing was steered."))
    return blocks
