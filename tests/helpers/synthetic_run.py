"""Synthetic results of a whole run, shaped as docs/CONTRACTS.md says (filter.json, counts meta,
neurons.json, eval.json, the neurons metrics, params), laid out where the plot stage reads them."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
import yaml

from emoneurons.emotions import EMOTIONS
from helpers.repo_params import params_dict

RATIOS = (0.01, 0.02, 0.03, 0.04, 0.05)
RANGES = ("bottom", "middle", "top", "all")


def _confusion(gen: torch.Generator, n: int, correct: list[int]) -> list[list[int]]:
    """Rows = true emotion: `correct[i]` on the diagonal, the rest spread at random."""
    size = len(EMOTIONS)
    matrix = [[0] * size for _ in range(size)]
    for i in range(size):
        matrix[i][i] = correct[i]
        for _ in range(n - correct[i]):
            j = int(torch.randint(size - 1, (1,), generator=gen))
            matrix[i][j if j < i else j + 1] += 1
    return matrix


def _condition(cid: str, kind: str, masked: str | None, ratio: float | None, layers: str | None,
               draw: int | None, n_neurons: int, matrix: list[list[int]], n: int) -> dict:
    accuracy = {e: matrix[i][i] / n for i, e in enumerate(EMOTIONS)}
    accuracy["overall"] = sum(matrix[i][i] for i in range(len(EMOTIONS))) / (n * len(EMOTIONS))
    ci95 = {k: [max(0.0, a - 0.2), min(1.0, a + 0.2)] for k, a in accuracy.items()}
    ci95["overall"] = [max(0.0, accuracy["overall"] - 0.08), min(1.0, accuracy["overall"] + 0.08)]
    return {
        "id": cid, "kind": kind, "masked": masked, "ratio": ratio, "layers": layers,
        "control": kind == "control", "draw": draw, "n_neurons": n_neurons,
        "accuracy": accuracy, "ci95": ci95, "confusion": matrix,
        "unparseable": {e: 0 for e in EMOTIONS},
    }


def synthetic_run(
    seed: int = 0, layers: int = 8, neurons_per_layer: int = 500, n: int = 6,
    top_rate: float = 0.01, ratios: tuple[float, ...] = RATIOS, ranges: tuple[str, ...] = RANGES,
    control_draws: int = 2, baseline_correct: int = 5, model: str = "synthetic/tiny-llama",
    backend: str = "template", nulls: bool = False,
) -> dict[str, Any]:
    """A consistent fake run: filter.json, counts meta, neurons.json, eval.json, the neurons
    metrics and params (as a dict), shaped as docs/CONTRACTS.md says. `nulls`: with matched
    controls as the verdict's null (vs_matched), a draw-level null and graded masking (see
    `add_nulls`)."""
    gen = torch.Generator().manual_seed(seed)
    total = layers * neurons_per_layer
    selections = {}
    for ratio in sorted({top_rate, *ratios}):
        picked = torch.randperm(total, generator=gen)[: max(6, round(ratio * total))]
        neurons: dict[str, list[list[int]]] = {e: [] for e in EMOTIONS}
        for k, flat in enumerate(picked.tolist()):
            pair = [flat // neurons_per_layer, flat % neurons_per_layer]
            first = EMOTIONS[k % len(EMOTIONS)]
            neurons[first].append(pair)
            if first == "anger" and k % 2 == 0:  # anger and disgust share neurons, as in the paper
                neurons["disgust"].append(pair)
        neurons = {e: sorted(v) for e, v in neurons.items()}
        selections[f"{ratio:g}"] = {
            "entropy_threshold": 0.5, "selected": len(picked), "neurons": neurons,
            "per_emotion": {e: len(v) for e, v in neurons.items()},
            "per_layer": {e: [sum(1 for p in v if p[0] == layer) for layer in range(layers)]
                          for e, v in neurons.items()},
        }
    neurons_json = {"top_rate": top_rate, "assign": "lape", "layers": layers,
                    "neurons_per_layer": neurons_per_layer, "ratios": selections}
    size = len(EMOTIONS)
    base = [min(n, baseline_correct + (i % 2)) for i in range(size)]
    conditions = [_condition("unmodified", "unmodified", None, None, None, None, 0,
                             _confusion(gen, n, base), n)]
    eval_ratios = sorted({top_rate, *ratios})
    for m, masked in enumerate(EMOTIONS):
        for ratio in eval_ratios:
            for layers_ in ranges if ratio == top_rate else ("all",):
                n_neurons = selections[f"{ratio:g}"]["per_emotion"][masked]
                drop = 1 + int(100 * ratio) // 2 if layers_ == "all" else 1
                # the target loses `drop` correct answers; the others move by -1, 0 or +1
                correct = [max(0, c - drop) if i == m else
                           min(n, max(0, c + int(torch.randint(-1, 2, (1,), generator=gen))))
                           for i, c in enumerate(base)]
                tag = f"r{ratio:g}-{layers_}"
                conditions.append(_condition(f"mask-{masked}-{tag}", "mask", masked, ratio, layers_,
                                             None, n_neurons, _confusion(gen, n, correct), n))
                for draw in range(control_draws):
                    wobble = [max(0, c - int(torch.randint(2, (1,), generator=gen))) for c in base]
                    conditions.append(_condition(
                        f"control-{masked}-{tag}-d{draw}", "control", masked, ratio, layers_, draw,
                        n_neurons, _confusion(gen, n, wobble), n))
    # Paired effects: masks lower the masked label by more than their controls; verdicts cycle.
    verdicts = ("specific", "not distinguishable from random", "not enough data")
    for k, c in enumerate(conditions[1:]):
        mean = -0.3 - 0.05 * k % 0.4 if c["kind"] == "mask" else -0.02 * (k % 3)
        summary = {"per_dialogue": [mean] * n * size, "mean": round(mean, 6), "ci95": [round(mean - 0.1, 6), round(mean + 0.05, 6)],
                   "per_emotion": {e: {"n": n, "mean": round(mean + 0.01 * i, 6), "ci95": [mean - 0.2, mean + 0.2]}
                                   for i, e in enumerate(EMOTIONS)}}
        c["effect"] = {"delta_true": summary, "delta_masked": summary}
        c["mcnemar"] = {"worse": 1, "better": 0, "p": 1.0}
    by_id = {c["id"]: c for c in conditions}
    for k, c in enumerate(c for c in conditions if c["kind"] == "mask"):
        draws = [by_id[f"control{c['id'].removeprefix('mask')}-d{d}"]["effect"]["delta_masked"]["mean"] for d in range(control_draws)]
        control = sum(draws) / len(draws) if draws else None
        own = c["effect"]["delta_masked"]["mean"]
        c["vs_control"] = {"mask_mean": own, "control_mean": control,
                           "difference": None if control is None else round(own - control, 6),
                           "difference_ci95": [None, None] if control is None else [own - control - 0.1, own - control + 0.1],
                           "p": None if control is None else 0.001 * (1 + k % 3), "p_floor": 1e-5,
                           "p_holm": None if control is None else 0.01 * (1 + 4 * (k % 3)),
                           "p_bh": None if control is None else 0.005 * (1 + 4 * (k % 3)),
                           "verdict": verdicts[k % 3] if control is not None else "not enough data"}
    overall = conditions[0]["accuracy"]["overall"]
    eval_json = {
        "model": model, "method": "score", "shots": 1, "n_test": n * size, "chance": 1 / 6,
        "n_per_emotion": {e: n for e in EMOTIONS},
        "baseline_above_chance": conditions[0]["ci95"]["overall"][0] > 1 / 6,
        "tokens": {"computed": 12345, "naive": 34567}, "conditions": conditions,
        "effects": {"measure": "synthetic", "test_effect": "delta_masked", "alternative": "less", "alpha": 0.05,
                    "sign_flips": 16384, "corrected_over": sum(c.get("vs_control", {}).get("p") is not None for c in conditions),
                    "rule": "specific: Holm p <= 0.05 (synthetic rule text)"},
    }
    kept = {e: 10 + 2 * i for i, e in enumerate(EMOTIONS)}
    dropped = {e: i % 3 for i, e in enumerate(EMOTIONS)}
    kept_total = sum(kept.values())
    table1 = {e: {"count": c, "percent": round(100 * c / kept_total, 2)} for e, c in kept.items()}
    table1["total"] = {"count": kept_total, "percent": 100.0}
    filter_json = {
        "generated": kept_total + sum(dropped.values()), "kept": kept_total,
        "dropped": sum(dropped.values()), "min_agree": 2, "judges": ["lexicon", "smollm"],
        "table1": table1, "dropped_per_emotion": dropped,
        "judge_agreement": {"lexicon": 0.83, "smollm": 0.2},
        "judge_invalid": {"lexicon": 0, "smollm": 1},
    }
    meta = {"model": model, "activation": "gate", "positions": "all", "text": "dialogue",
            "dialogues": {e: 4 * c // 5 for e, c in kept.items()},
            "tokens": {e: 1000 + i for i, e in enumerate(EMOTIONS)},
            "layers": layers, "neurons": neurons_per_layer}
    top = selections[f"{top_rate:g}"]
    neuron_metrics = {**{f"neurons_{e}": top["per_emotion"][e] for e in EMOTIONS},
                      "selected": top["selected"]}
    params = params_dict({"model": {"id": model}, "generate": {"backend": backend},
                          "select": {"top_rate": top_rate},
                          "eval": {"ratios": list(ratios), "layer_ranges": list(ranges),
                                   "control_draws": control_draws}})
    assert overall == eval_json["conditions"][0]["accuracy"]["overall"]
    if nulls:
        add_nulls(eval_json, top_rate, control_draws, n, gen)
    return {"filter": filter_json, "meta": meta, "neurons": neurons_json, "eval": eval_json,
            "neuron_metrics": neuron_metrics, "params": params}


# Per emotion at top_rate, all layers: the matched verdict; the uniform one is the synthetic cycle's.
MATCHED_VERDICTS = {"anger": "specific", "disgust": "not distinguishable from random", "fear": "specific",
                    "happiness": "not distinguishable from random", "sadness": "not enough data", "surprise": "specific"}


def add_nulls(eval_json: dict[str, Any], top_rate: float, control_draws: int, n: int, gen: torch.Generator) -> None:
    """Matched controls beside the uniform ones (the verdict's null), a draw-level null of 9 draws
    over the six RQ2 masks, and graded masking at 0.5 with its matched controls, in eval.json's shapes."""
    conditions = eval_json["conditions"]
    masks = [c for c in conditions if c["kind"] == "mask"]
    size = len(EMOTIONS)
    for k, mask in enumerate(masks):
        tag = mask["id"].removeprefix("mask-")
        for draw in range(control_draws):
            matched = _condition(f"matched-{tag}-d{draw}", "matched", mask["masked"], mask["ratio"], mask["layers"], draw,
                                 mask["n_neurons"], mask["confusion"], n)
            mean = round(-0.1 - 0.01 * draw, 6)
            matched["effect"] = {key: {"per_dialogue": [mean] * n * size, "mean": mean, "ci95": [mean - 0.1, mean + 0.1],
                                       "per_emotion": {}} for key in ("delta_true", "delta_masked")}
            matched["mcnemar"] = {"worse": 0, "better": 0, "p": 1.0}
            conditions.append(matched)
        rq2 = mask["layers"] == "all" and mask["ratio"] == top_rate
        verdict = MATCHED_VERDICTS[mask["masked"]] if rq2 else ("specific", "not distinguishable from random")[k % 2]
        mask["vs_matched"] = mask["vs_control"] | {"control_mean": -0.105, "p_holm": 0.02 if verdict == "specific" else 0.4,
                                                   "verdict": verdict}
        mask["scale"] = 0.0
    eval_json["effects"] |= {"null": "matched", "controls": {"matched": {"key": "vs_matched", "corrected_over": len(masks)},
                                                             "uniform": {"key": "vs_control", "corrected_over": len(masks)}}}
    rq2 = {c["masked"]: c for c in masks if c["layers"] == "all" and c["ratio"] == top_rate}
    draws = {}
    for i, mask in enumerate(rq2.values()):
        values = [round(-0.2 + 0.05 * d + 0.01 * i, 6) for d in range(9)]
        effect = mask["effect"]["delta_masked"]["mean"]
        rank = 1 + sum(v <= effect for v in values)
        draws[mask["id"]] = {"effect": effect, "draws": values, "draws_mean": round(sum(values) / 9, 6), "draws_sd": 0.137,
                             "rank": rank, "p": round(rank / 10, 6), "p_holm": min(1.0, 6 * rank / 10), "verdict": "not enough draws",
                             "p_normal": 0.001 * (i + 1), "p_normal_holm": 0.006 * (i + 1),
                             "verdict_normal": "specific" if 0.006 * (i + 1) <= 0.05 else "not distinguishable from random"}
    eval_json["draw_null"] = {"kind": "matched", "draws": 9, "masks": "rq2", "alpha": 0.05, "correction": "holm",
                              "corrected_over": 6, "draws_needed": 119, "rule": "synthetic draw rule", "runs": 48,
                              "tokens_computed": 4321, "conditions": draws}
    doses = {}
    for i, (emotion, mask) in enumerate(rq2.items()):
        effect = mask["effect"]["delta_masked"]["mean"]
        half = round(effect / 2 if i % 2 == 0 else effect * 1.5, 6)  # odd emotions: not monotone
        wrong = [[0 if i == j else (n if j == (i + 1) % size else 0) for j in range(size)] for i in range(size)]  # every answer wrong
        graded = _condition(f"{mask['id']}-s0.5", "mask", emotion, top_rate, "all", None, mask["n_neurons"], wrong, n)
        graded |= {"scale": 0.5, "effect": {"delta_masked": {"mean": half, "per_dialogue": [half] * n * size, "ci95": [half, half],
                                                             "per_emotion": {}}}}
        conditions.append(graded)
        doses[emotion] = {"n_neurons": mask["n_neurons"], "mask": [effect, half], "control": [-0.105, -0.05],
                          "monotone": i % 2 == 0, "reversals": i % 2}
    eval_json["dose_response"] = {"scales": [0.0, 0.5], "effect": "delta_masked", "control_kind": "matched",
                                  "emotions": doses, "rule": "synthetic dose rule"}


RUN_PATHS = {
    "filter": "reports/filter.json", "meta": "data/counts/meta.json",
    "neurons": "data/neurons/neurons.json", "eval": "reports/metrics/eval.json",
    "neuron_metrics": "reports/metrics/neurons.json",
}


def write_run(root: Path, run: dict[str, Any]) -> None:
    """Lay a synthetic run out in a workspace at the paths the plot stage reads."""
    for key, rel in RUN_PATHS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run[key], indent=1))
    (root / "params.yaml").write_text(yaml.safe_dump(run["params"]))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


