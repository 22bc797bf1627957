"""The report's "Emotion directions" section: how the directions were made, the geometry at the
layer of strongest separation with its valence verdict, and one table per emotion (its place on
PC1/PC2 and its neurons' write alignment against the control draws), from directions.json."""

from __future__ import annotations

from emoneurons.emotions import EMOTIONS
from emoneurons.io.directions_file import DirectionsFile
from emoneurons.report.document.blocks import Block, Heading, Image, Paragraph, Table
from emoneurons.report.document.number_formats import count, number, p_value

CONTROL_WORDS = {"matched": "activity-matched", "uniform": "uniform same-layer"}  # params.ControlKind in words


def control_words(kind: str) -> str:
    """A control kind as the report says it (an unknown kind as it is)."""
    return CONTROL_WORDS.get(kind, kind)


def _tokens(directions: DirectionsFile) -> str:
    tokens = directions.summed["tokens"]
    return ", ".join(f"{e} {count(tokens[e])}" for e in EMOTIONS)


def _alignment_row(directions: DirectionsFile, emotion: str) -> tuple[str, ...]:
    point = directions.geometry["coordinates"][emotion]
    entry = (directions.emotions or {}).get(emotion)
    if entry is None:
        return (emotion, number(point["pc1"], 2), number(point["pc2"], 2), "0", *["n/a"] * 8)
    cells = [emotion, number(point["pc1"], 2), number(point["pc2"], 2), count(entry.neurons)]
    for key in ("abs_cos", "signed_cos"):
        low, high = entry.control_interval[key]
        cells += [number(entry.observed[key]), number(entry.other_emotions[key]),
                  f"{number(entry.control_mean[key])} [{number(low)}, {number(high)}]",
                  p_value(entry.p[key]) + (" *" if entry.aligned[key] else "")]
    return tuple(cells)


def directions_blocks(directions: DirectionsFile) -> list[Block]:
    """Heading, method, the geometry's verdict, the figure (reports/figures/directions.png) and the table."""
    geometry, alignment = directions.geometry, directions.alignment
    valence = geometry["valence"]
    explained = geometry["explained_variance"]
    verdict = ("**is a valence axis**" if valence["pc1_is_valence"] else "**is not a valence axis**")
    surprise = "lies between happiness and the negative emotions" if valence["surprise_between"] else "does not lie between them"
    second = " PC2 passes the same rule." if valence["pc2_is_valence"] else ""
    aligned = [e for e in EMOTIONS if e in (directions.emotions or {}) and directions.emotions[e].aligned["signed_cos"]]
    aligned_abs = [e for e in EMOTIONS if e in (directions.emotions or {}) and directions.emotions[e].aligned["abs_cos"]]
    return [
        Heading("Emotion directions in the residual stream", 2),
        Paragraph(
            "Each emotion's direction at layer l is the mean residual stream after block l over its train dialogues' "
            "tokens (count's tokens: the dialogue's own, without BOS) minus the mean over every train token "
            f"({_tokens(directions)} tokens). Separation by layer: between- over within-class variance, each residual "
            "dimension in units of its own within-class spread (so that a few huge dimensions cannot decide it); "
            f"strongest at layer **{directions.strongest_layer}** of {directions.layers}. There, the six class means "
            f"(standardised the same way) on their principal axes: PC1 holds {100 * explained['pc1']:.0f}% of their "
            f"variance and PC2 {100 * explained['pc2']:.0f}%. PC1 {verdict} by the rule (happiness beyond all four "
            "negative emotions on PC1, farther from the nearest than the negatives spread among themselves: margin "
            f"{number(valence['margin'], 2)}, at least 1 needed); Pearson r of PC1 with valence codes (happiness +1, "
            f"surprise 0, the others -1) {valence['r']:+.2f}; surprise {surprise}.{second}"
        ),
        Paragraph(
            f"Write alignment: each selected neuron's write direction ({directions.write_direction}) against its emotion's "
            "direction at the neuron's layer: |cos| (aligned either way) and sign(value) x cos (the value's sign is the "
            "neuron's mean down_proj input on the emotion's tokens, so positive means it pushes the residual towards the "
            f"emotion there), averaged over the emotion's neurons at select.top_rate {alignment['ratio']:g}; against "
            f"{alignment['draws']} {control_words(alignment['control'])} draws of the same number of neurons per layer"
            + (f" and the same quantile bins of P(active) ({alignment['activity_bins']} per layer)"
               if alignment.get("activity_bins") else "") + " (never the "
            "emotion's own): their mean and middle 95%, and the one-sided p = (1 + draws at or above) / (1 + draws); "
            f"* marks p <= {alignment['alpha']:g}/6 (Bonferroni over the six emotions). 'Other emotions': the same neurons "
            "against the other five emotions' directions (mean). Above the controls (signed): "
            f"{', '.join(aligned) or 'none'}; (|cos|): {', '.join(aligned_abs) or 'none'}."
        ),
        Image("directions", "Separation by layer, the class means' PCA, and the neurons' write alignment against control draws"),
        Table(
            headers=("emotion", "PC1", "PC2", "neurons", "|cos|", "|cos| other emotions", "|cos| controls [95%]", "p",
                     "signed cos", "signed other emotions", "signed controls [95%]", "p"),
            rows=tuple(_alignment_row(directions, e) for e in EMOTIONS),
            caption=f"Each emotion's place on the class means' PC1/PC2 (layer {geometry['layer']}, standardised units) "
                    "and its neurons' write alignment with its direction",
            numeric=(False, *[True] * 11),
        ),
    ]
