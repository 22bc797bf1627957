"""The atlas (`emoneurons atlas`): several models' runs of the same data and plan set side by side.
Pure functions from each model's records (eval.json, neurons.json, steer.json, cards.json and,
where the run has it, directions.json) to the
tables the atlas writes and draws; the records are read at their experiments' revisions by
runtime/atlas_runs.py, and the files written by report/atlas/write.py.

Neurons cannot be matched across models (different widths, depths and bases), so what is compared
is where the selected neurons sit (relative depth: layer / layers) and what they respond to: the
token profile of an emotion is the set of tokens its cards list as the ones its neurons fire on most
often relative to their frequency (cards.json's `top_tokens`), compared across models by Jaccard."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.cards_file import CardsFile
from emoneurons.io.directions_file import DirectionsFile
from emoneurons.io.eval_file import EvalFile
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.io.steer_file import SteerFile
from emoneurons.params import same_ratio
from emoneurons.report.errors import ReportDataError
from emoneurons.report.results.accuracy import baseline_clear, ci_of
from emoneurons.report.results.effects import dose_rows, draw_null_rows, effect_rows, survives_matching
from emoneurons.report.results.neuron_sets import per_layer_counts

DEPTH_BINS = 5  # relative depth in fifths: 0-0.2 (first layers) ... 0.8-1 (last layers)


@dataclass(frozen=True)
class ModelRun:
    """One model's finished run (an experiment), as the atlas reads it."""

    experiment: str
    model: str  # params' model.id
    eval: EvalFile
    neurons: NeuronsFile
    steer: SteerFile
    cards: CardsFile
    test_split: str | None = None  # data/split's hash in the run's dvc.lock: same hash, same test dialogues
    directions: DirectionsFile | None = None  # directions.json (None: a run from before the directions stage)


def depth_bin(layer: int, layers: int, bins: int = DEPTH_BINS) -> int:
    """The relative-depth bin of a layer: floor(bins * layer / layers), so layer 0 is in the first
    bin and the last layer in the last (layer / layers < 1)."""
    if not 0 <= layer < layers:
        raise ReportDataError(f"layer {layer} outside 0..{layers - 1}")
    return bins * layer // layers


def neurons_by_depth(per_layer: Mapping[str, Sequence[int]], bins: int = DEPTH_BINS) -> dict[str, list[int]]:
    """Emotion neurons per relative-depth bin per emotion, from the neurons per layer."""
    out = {}
    for emotion, counts in per_layer.items():
        binned = [0] * bins
        for layer, n in enumerate(counts):
            binned[depth_bin(layer, len(counts), bins)] += int(n)
        out[emotion] = binned
    return out


def depth_shares(by_depth: Mapping[str, Sequence[int]]) -> dict[str, list[float]]:
    """Each bin's share of the emotion's neurons (NaN for an emotion without neurons): models
    select different numbers of neurons, so the shares are what can be set side by side."""
    out = {}
    for emotion, counts in by_depth.items():
        total = sum(counts)
        out[emotion] = [n / total if total else math.nan for n in counts]
    return out


def normalise_token(token: str) -> str:
    """A token as a word to compare across tokenizers: the word-start markers of byte-level BPE
    (Ġ) and SentencePiece (▁) and surrounding spaces dropped, lower case."""
    return token.replace("Ġ", " ").replace("▁", " ").strip().lower()


def token_profile(cards: CardsFile, emotion: str) -> set[str]:
    """The tokens the emotion's cards list as their neurons' top tokens (normalised; empty ones dropped)."""
    entry = cards.emotions.get(emotion)
    return {word for token in (entry.top_tokens() if entry else []) if (word := normalise_token(token))}


def jaccard(a: set[str], b: set[str]) -> float:
    """|A ∩ B| / |A ∪ B|; NaN when both are empty (nothing to compare)."""
    union = a | b
    return len(a & b) / len(union) if union else math.nan


def profile_overlap(a: Mapping[str, set[str]], b: Mapping[str, set[str]]) -> list[list[float]]:
    """Jaccard of model A's emotion-i profile with model B's emotion-j profile, [i][j] in paper
    order: a diagonal above its row means both models' neurons for an emotion fire on the same words."""
    return [[jaccard(a.get(i, set()), b.get(j, set())) for j in EMOTIONS] for i in EMOTIONS]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def same_vs_other(matrix: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(mean Jaccard of the same emotion across the two models, mean of every other pairing),
    NaN cells left out: profiles made of words every emotion's neurons fire on give equal means."""
    same = [matrix[i][i] for i in range(len(matrix))]
    other = [matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix)) if i != j]
    return _mean(same), _mean(other)


def baseline_row(run: ModelRun) -> dict[str, Any]:
    """The unmodified model's accuracy on the test split, its exact 95% CI and chance."""
    clear, accuracy, low, chance = baseline_clear(run.eval)
    return {"model": run.model, "experiment": run.experiment, "n_test": run.eval.n_test, "accuracy": accuracy,
            "ci95": list(ci_of(run.eval.unmodified())["overall"]), "chance": chance, "above_chance": clear}


def verdict_rows(run: ModelRun) -> list[dict[str, Any]]:
    """Per emotion: the paired effect of its neurons (at select.top_rate, all layers), its random
    control's of the verdict's null kind, their difference, the Holm p and the verdict, as
    mask-eval's corrected test wrote them (results.effects.effect_rows, the single-model report's reading);
    beside them the verdict against every control kind, whether "specific" survives matching, the
    draw-level null's verdicts and graded masking's monotonicity where the run has them. An emotion
    without a masked condition there reads `not enough data`."""
    top_rate = run.neurons.top_rate
    rows = {r["masked"]: r for r in effect_rows(run.eval) if r["layers"] == "all" and same_ratio(r["ratio"], top_rate)}
    draws = {r["masked"]: r for r in draw_null_rows(run.eval) if r["layers"] == "all" and same_ratio(r["ratio"], top_rate)}
    doses = {r["emotion"]: r for r in dose_rows(run.eval)}
    out = []
    for emotion in EMOTIONS:
        row = rows.get(emotion)
        drawn, dose = draws.get(emotion) or {}, doses.get(emotion) or {}
        extra = {"null": run.eval.null, "draw_verdict": drawn.get("verdict"), "draw_verdict_normal": drawn.get("verdict_normal"),
                 "draw_rank": drawn.get("rank"), "draws": drawn.get("draws"), "monotone": dose.get("monotone"),
                 "reversals": dose.get("reversals")}
        if row is None:
            out.append({"emotion": emotion, "n_neurons": 0, "effect": math.nan, "control": math.nan,
                        "difference": math.nan, "difference_ci": [math.nan, math.nan], "p_holm": math.nan,
                        "verdict": "not enough data", "verdicts": {}, "survives_matching": survives_matching({})} | extra)
            continue
        out.append({"emotion": emotion, "n_neurons": row["n_neurons"], "effect": row["effect"], "control": row["control"],
                    "difference": row["difference"], "difference_ci": list(row["difference_ci"]),
                    "p_holm": row["p_holm"], "verdict": row["verdict"] or "not enough data", "verdicts": row["verdicts"],
                    "survives_matching": survives_matching(row["verdicts"])} | extra)
    return out


def steering_rows(steer: SteerFile) -> list[dict[str, Any]]:
    """Per emotion and alpha: the share shift of the steered replies and of the control's (mean
    over draws), each with its replies' log-likelihood-per-token shift and whether the text broke
    (a control's when any draw broke). steer.json written before coherence: text_broke None."""
    out = []
    for emotion in EMOTIONS:
        entry = steer.emotions.get(emotion)
        for step in entry.steered if entry else ():
            controls = entry.controls_at(step.alpha)
            out.append({
                "emotion": emotion, "alpha": step.alpha, "n_neurons": entry.n_neurons,
                "share_shift": step.share_shift,
                "control_shift": _mean([c.share_shift for c in controls]),
                "logp_per_token_shift": step.value("coherence.logp_per_token_shift") if step.coherence else None,
                "control_logp_per_token_shift": _mean([c.value("coherence.logp_per_token_shift") for c in controls]),
                "text_broke": step.text_broke() if step.coherence else None,
                "control_broke": any(c.text_broke() for c in controls) if step.coherence else None,
            })
    return out


def depth_table(run: ModelRun, bins: int = DEPTH_BINS) -> dict[str, Any]:
    by_depth = neurons_by_depth(per_layer_counts(run.neurons, run.neurons.top_rate), bins)
    return {"layers": run.neurons.layers, "counts": by_depth, "shares": depth_shares(by_depth)}


def directions_row(directions: DirectionsFile | None) -> dict[str, Any] | None:
    """One model's directions as the atlas compares them (None when off or absent): separation by
    relative depth (layer / layers, as the neurons' depth), the class means' PCA and its valence
    verdict at the strongest layer, and each emotion's write alignment against its control draws."""
    if directions is None or not directions.enabled:
        return None
    layers, geometry, alignment = directions.layers, directions.geometry, directions.alignment
    return {
        "layers": layers,
        "strongest_layer": directions.strongest_layer,
        "strongest_depth": directions.strongest_layer / layers,
        "depth": [layer / layers for layer in range(layers)],
        "separation": list(directions.by_layer["separation"]),
        "explained_variance": dict(geometry["explained_variance"]),
        "coordinates": {e: dict(geometry["coordinates"][e]) for e in EMOTIONS},
        "valence": dict(geometry["valence"]),
        "control": alignment["control"], "draws": alignment["draws"], "ratio": alignment["ratio"],
        "alignment": {e: {"neurons": a.neurons, "observed": dict(a.observed), "other_emotions": dict(a.other_emotions),
                          "control_mean": dict(a.control_mean), "control_sd": dict(a.control_sd), "p": dict(a.p),
                          "aligned": dict(a.aligned)}
                      for e, a in (directions.emotions or {}).items()},
    }


def atlas_tables(runs: Sequence[ModelRun], bins: int = DEPTH_BINS) -> dict[str, Any]:
    """Everything the atlas shows, keyed by model (runs in the given order; models must differ)."""
    labels = [run.model for run in runs]
    if len(set(labels)) != len(labels):
        repeated = sorted({m for m in labels if labels.count(m) > 1})
        raise ReportDataError(f"model {', '.join(repeated)} appears in more than one experiment; one each")
    profiles = {run.model: {e: token_profile(run.cards, e) for e in EMOTIONS} for run in runs}
    splits = {run.test_split for run in runs}
    return {
        "models": labels,
        "experiments": {run.model: run.experiment for run in runs},
        "same_test_split": None if None in splits else len(splits) == 1,
        "depth_bins": bins,
        "baseline": {run.model: baseline_row(run) for run in runs},
        "depth": {run.model: depth_table(run, bins) for run in runs},
        "token_profiles": {m: {e: sorted(p) for e, p in by_emotion.items()} for m, by_emotion in profiles.items()},
        "profile_overlap": [
            {"models": [a, b], "jaccard": (matrix := profile_overlap(profiles[a], profiles[b])),
             "same_emotion_mean": same_vs_other(matrix)[0], "other_emotions_mean": same_vs_other(matrix)[1],
             "shared": {e: sorted(profiles[a][e] & profiles[b][e]) for e in EMOTIONS}}
            for a, b in itertools.combinations(labels, 2)],
        "effect": {run.model: (run.eval.effects or {}).get("test_effect") for run in runs},
        "verdicts": {run.model: verdict_rows(run) for run in runs},
        "steering": {run.model: steering_rows(run.steer) for run in runs},
        "directions": {run.model: directions_row(run.directions) for run in runs},
    }
