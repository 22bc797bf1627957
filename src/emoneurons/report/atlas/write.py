"""reports/atlas/: atlas.json, atlas.md, the offline atlas.html and figures/ (PNG and SVG) from the
models' runs (read at their experiments' revisions by runtime/atlas_runs.py), written whole or not
at all."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.atomic import atomic_dir
from emoneurons.io.tables import DataError
from emoneurons.report.atlas.figures import DIRECTIONS_FIGURE, atlas_figures
from emoneurons.report.atlas.tables import ModelRun, atlas_tables
from emoneurons.report.directions.section import control_words
from emoneurons.report.document.blocks import Block, Heading, Image, Paragraph, Table
from emoneurons.report.document.html import render_html
from emoneurons.report.document.markdown import render_markdown
from emoneurons.report.document.number_formats import ci_plain, number, p_value
from emoneurons.report.errors import ReportDataError
from emoneurons.report.style import save_figure


class AtlasError(EmoneuronsError, ValueError):
    """An experiment or output the atlas cannot use, in one line naming it."""


def _finite(value: Any) -> Any:
    """NaN as null, so atlas.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _pp(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:+.1f}"


def _null_blocks(tables: dict[str, Any]) -> list[Block]:
    """Per emotion and model, the verdicts against the stronger nulls: each control kind, whether
    'specific' survives activity matching, the draw-level null, graded masking's monotonicity."""
    models = tables["models"]

    def draw_cell(r: dict[str, Any]) -> str:
        if r.get("draw_verdict") is None:
            return "n/a"
        return f"{r['draw_verdict']} (rank {r['draw_rank']} of {r['draws'] + 1}); normal: {r['draw_verdict_normal']}"

    def dose_cell(r: dict[str, Any]) -> str:
        return "n/a" if r.get("monotone") is None else "monotone" if r["monotone"] else f"{r['reversals']} reversal(s)"

    rows = tuple((e, *(cell for m in models for r in [tables["verdicts"][m][k]]
                       for cell in (" / ".join(f"{kind}: {v}" for kind, v in r["verdicts"].items()) or "n/a",
                                    r["survives_matching"], draw_cell(r), dose_cell(r))))
                 for k, e in enumerate(EMOTIONS))
    return [
        Heading("Against the stronger nulls"),
        Paragraph("A uniform draw from the same layers is mostly quiet neurons, while LAPE selects busy ones; the "
                  "activity-matched control draws as many neurons per layer from the same P(active) quantile bins. "
                  "The draw-level null ranks the neurons' mean effect among many control draws; graded masking "
                  "multiplies the activations by a factor instead of zeroing them (docs/METHOD.md)."),
        Table(("emotion", *(f"{m}: {what}" for m in models
                            for what in ("verdict per control kind", "specific survives matching?", "draw-level null",
                                         "dose-response"))),
              rows, "Per emotion and model (select.top_rate, all layers): the verdicts against each null",
              (False, *(False for _ in models for _ in range(4)))),
    ]


def atlas_blocks(tables: dict[str, Any]) -> list[Block]:
    """atlas.md and atlas.html: the tables and figures of the atlas."""
    models = tables["models"]
    same = {True: "the same test dialogues (data/split's hash in dvc.lock is equal)",
            False: "**different test dialogues** (data/split's hash differs: the rows below are not paired across models)",
            None: "test dialogues not checked (a dvc.lock without data/split)"}[tables["same_test_split"]]
    experiments = tables["experiments"]
    listed = ", ".join(f"`{m}` (experiment `{experiments[m]}`)" for m in models)
    blocks: list[Block] = [
        Heading("Atlas: emotion neurons across models", 1),
        Paragraph(f"Models: {listed}; {same}."),
        Table(("model", "test dialogues", "unmodified accuracy (95% CI)", "chance", "above chance"),
              tuple((m, str(b["n_test"]), f"{number(b['accuracy'])} {ci_plain(*b['ci95'])}", number(b["chance"]),
                     "yes" if b["above_chance"] else "no") for m, b in tables["baseline"].items()),
              "Each model's unmodified accuracy beside chance (exact Clopper-Pearson CI)", (False, True, True, True, False)),
        Image("atlas_effects", "Unmodified accuracy per model beside chance, and the paired effect of each emotion's "
                               "neurons per model with its random control, starred where specific"),
        Table(("emotion", *(f"{m}: {what}" for m in models for what in ("neurons", "effect", "control", "Holm p", "verdict"))),
              tuple((e, *(cell for m in models for r in [tables["verdicts"][m][k]]
                          for cell in (str(r["n_neurons"]), number(r["effect"]), number(r["control"]), p_value(r["p_holm"]),
                                       f"**{r['verdict']}**")))
                    for k, e in enumerate(EMOTIONS)),
              "Per emotion and model: the paired effect of its neurons (select.top_rate, all layers) and of random neurons "
              "from the same layers (the verdict's null kind), and mask-eval's verdict (the single-model report's)",
              (False, *(n for _ in models for n in (True, True, True, True, False)))),
        *_null_blocks(tables),
        Heading("Where the neurons sit"),
        Paragraph(f"Relative depth = layer / layers, in {tables['depth_bins']} bins (layer 0 in the first, the last "
                  "layer in the last); each bin's share of the emotion's neurons, since the models select different numbers."),
        Image("atlas_depth", "Share of each emotion's neurons per relative-depth bin, one line per model"),
        Table(("model", "emotion", *(f"{k / tables['depth_bins']:.1f}-{(k + 1) / tables['depth_bins']:.1f}"
                                     for k in range(tables["depth_bins"]))),
              tuple((m, e, *(str(n) for n in tables["depth"][m]["counts"][e])) for m in models for e in EMOTIONS),
              "Emotion neurons per relative-depth bin (counts)", (False, False, *(True,) * tables["depth_bins"])),
        Heading("What the neurons respond to"),
        Paragraph("Neurons cannot be matched across models, so their token profiles are compared: an emotion's profile is "
                  "the set of tokens its neuron cards list as their top tokens (each card's `cards.top_tokens` tokens its "
                  "neuron fires on most often relative to their frequency in train, for the emotion's `cards.top_neurons` "
                  "neurons; lower case, word-start markers dropped). Overlap: Jaccard |A∩B| / |A∪B| of two models' "
                  "profiles; a diagonal above the rest of its row means both models' neurons for that emotion fire on "
                  "the same words."),
        Image("atlas_overlap", "Jaccard overlap of the emotion neurons' top tokens across models"),
        *(Table(("emotion", "Jaccard (same emotion)", "shared tokens"),
                tuple((e, number(p["jaccard"][k][k]), ", ".join(f"`{t}`" for t in p["shared"][e]) or "none")
                      for k, e in enumerate(EMOTIONS)),
                f"Top-token overlap, {p['models'][0]} vs {p['models'][1]}: mean Jaccard of the same emotion "
                f"{number(p['same_emotion_mean'])}, of every other pairing {number(p['other_emotions_mean'])}",
                (False, True, False))
          for p in tables["profile_overlap"]),
        Heading("Steering"),
        Paragraph("Each emotion's neurons scaled by alpha while the model replies to the same neutral prompts: the share of "
                  "replies the classifier labels with the steered emotion, minus the unmodified model's, beside the random "
                  "control's, with the replies' coherence (steer.json): **text broke** marks a shift made of broken text."),
        Image("atlas_steering", "Steering shift per emotion and model, controls as diamonds, x where the text broke"),
        Table(("model", "emotion", "alpha", "shift (pp)", "control (pp)", "Δ log-lik/token", "text broke", "control broke"),
              tuple((m, r["emotion"], f"{r['alpha']:g}", _pp(r["share_shift"]), _pp(r["control_shift"]),
                     number(r["logp_per_token_shift"]), _yes(r["text_broke"]), _yes(r["control_broke"]))
                    for m in models for r in tables["steering"][m]),
              "Steering shifts and coherence per model", (False, False, True, True, True, True, False, False)),
    ]
    return blocks + directions_blocks(tables)


def _aligned(row: dict[str, Any], key: str) -> str:
    return ", ".join(e for e in EMOTIONS if e in row["alignment"] and row["alignment"][e]["aligned"][key]) or "none"


def directions_blocks(tables: dict[str, Any]) -> list[Block]:
    """The emotion-directions section: only the models whose runs have directions (none: no section)."""
    rows = {m: r for m in tables["models"] if (r := tables["directions"].get(m)) is not None}
    if not rows:
        return []
    without = [m for m in tables["models"] if m not in rows]
    models = list(rows)
    return [
        Heading("Emotion directions in the residual stream"),
        Paragraph("Each model's emotion directions (class mean of the residual after each block over the emotion's train "
                  "tokens minus the mean over all), compared where models can be: separation of the six emotions by "
                  "relative depth (between- over within-class variance in standardised dimensions), the six class means' "
                  "PCA at each model's strongest layer with the valence rule (PC1 is valence when happiness lies beyond all "
                  "four negative emotions, farther from the nearest than they spread; margin >= 1), and how far each "
                  "emotion's neurons' write directions align with its direction above control draws of the same number "
                  "of neurons per layer (the single-model report's section, per model)"
                  + (f"; no directions in the runs of {', '.join(without)} (directions.enabled: false, or run before "
                     "the directions stage)." if without else ".")),
        Image(DIRECTIONS_FIGURE, "Separation by relative depth, write alignment above the controls per emotion and model, "
                                 "and each model's class means on PC1/PC2"),
        Table(("model", "strongest layer (depth)", "PC1 / PC2", "PC1 valence (margin, r)", "controls",
               "aligned (signed)", "aligned (|cos|)"),
              tuple((m, f"{r['strongest_layer']} of {r['layers']} ({r['strongest_depth']:.2f})",
                     f"{100 * r['explained_variance']['pc1']:.0f}% / {100 * r['explained_variance']['pc2']:.0f}%",
                     f"{'**yes**' if r['valence']['pc1_is_valence'] else 'no'} ({number(r['valence']['margin'], 2)}, "
                     f"{r['valence']['r']:+.2f})", f"{r['draws']} {control_words(r['control'])}", _aligned(r, "signed_cos"), _aligned(r, "abs_cos"))
                    for m, r in rows.items()),
              "Per model: the strongest layer, the class means' PCA and its valence verdict, and the emotions whose neurons "
              "write along their direction above the controls (p <= 0.05/6)", (False, True, True, False, False, False, False)),
        Table(("emotion", *(f"{m}: {what}" for m in models for what in ("signed cos (controls)", "p"))),
              tuple((e, *(cell for m in models for cell in _alignment_cells(rows[m], e))) for e in EMOTIONS),
              "Per emotion and model: the neurons' mean signed cos with the emotion's direction, the control draws' mean "
              "in brackets, and the one-sided p", (False, *(n for _ in models for n in (True, True)))),
    ]


def _alignment_cells(row: dict[str, Any], emotion: str) -> tuple[str, str]:
    entry = row["alignment"].get(emotion)
    if entry is None:
        return ("no neurons", "n/a")
    return (f"{number(entry['observed']['signed_cos'])} ({number(entry['control_mean']['signed_cos'])})",
            p_value(entry["p"]["signed_cos"]))


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**yes**" if flag else "no")


def write_atlas(runs: Sequence[ModelRun], out: str | Path) -> Path:
    """atlas.json, atlas.md, atlas.html and figures/ under `out`, replaced whole."""
    if len(runs) < 2:
        raise AtlasError(f"atlas: needs at least two models' experiments, got {len(runs)}")
    try:
        tables = atlas_tables(runs)
        blocks = atlas_blocks(tables)
        figures = atlas_figures(tables)
    except ReportDataError as error:
        raise AtlasError(f"atlas: {error}") from None
    except (KeyError, TypeError, DataError) as error:  # a record without a key the atlas reads
        raise AtlasError(f"atlas: an experiment's records lack {error}") from None
    out = Path(out)
    with atomic_dir(out) as tmp:
        for name, figure in figures.items():
            save_figure(figure, tmp / "figures", name)
        (tmp / "atlas.json").write_text(json.dumps(_finite(tables), indent=1, allow_nan=False) + "\n")
        (tmp / "atlas.md").write_text(render_markdown(blocks))
        (tmp / "atlas.html").write_text(render_html(blocks, tmp / "figures", "emoneurons atlas"))
    return out
