"""The pipeline's artifacts, one registry: each file or folder's path, the stage that writes it, the
stages and commands that read it, and for a record others read its typed reader (checked on read:
one RecordError, io/records.py, naming the file and the key). The stages take their default paths
from here and read a record through its typed reader, which names the file by its path here; so do
the report, `emoneurons compare` and `emoneurons atlas`. dvc.yaml declares the same outs and deps
(tests/unit/io/test_artifacts.py holds the two together).

This module imports no reader: a stage depends (dvc.yaml's code deps) on the readers it imports,
not on every reader of the pipeline.

    python -m emoneurons.io.artifacts     # the registry as a table: artifact, path, written by, read by
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRACKED = "git"  # the writer of an input kept in git, not made by a stage
COMPARE, ATLAS = "emoneurons compare", "emoneurons atlas"


@dataclass(frozen=True)
class Artifact:
    """One artifact: `path` (repo-relative; a folder where the whole folder is the output), who
    writes it (a dvc.yaml stage, or TRACKED) and reads it (stages, commands), and for a JSON record
    that others read, `reader`: its typed reader ("module:function", reading the parsed JSON)."""

    name: str
    path: str
    writer: str
    readers: tuple[str, ...]
    reader: str | None = None

    @property
    def folder(self) -> Path:
        """The folder the artifact sits in (a stage's `--out` when it writes a folder of them)."""
        return Path(self.path).parent

    def at(self, folder: str | Path) -> Path:
        """The artifact's file under `folder` (a stage's --out, a test's workspace)."""
        return Path(folder) / Path(self.path).name


def _artifact(name: str, path: str, writer: str, *readers: str, reader: str | None = None) -> Artifact:
    return Artifact(name, path, writer, tuple(readers), reader)


SEED_TOPICS = _artifact("seed topics", "data/seeds/topics.txt", TRACKED, "augment")
EXTERNAL = _artifact("external data sets", "data/external", TRACKED, "filter")
STEER_PROMPTS = _artifact("steering prompts", "data/steer/prompts.txt", TRACKED, "steer")

TOPICS = _artifact("topics", "data/topics.parquet", "augment", "generate")
TOPICS_CHECKS = _artifact("topics checks", "data/topics.checks.json", "augment")
AUGMENT_CACHE = _artifact("augment LLM cache", "data/cache/llm/augment", "augment", "augment")
AUGMENT_REPORT = _artifact("augment record", "reports/augment.json", "augment")

DIALOGUES = _artifact("dialogues", "data/dialogues.parquet", "generate", "filter")
DIALOGUES_CHECKS = _artifact("dialogues checks", "data/dialogues.checks.json", "generate")
GENERATE_CACHE = _artifact("generate LLM cache", "data/cache/llm/generate", "generate", "generate")
GENERATE_REPORT = _artifact("generate record", "reports/generate.json", "generate")

FILTERED = _artifact("filtered dialogues", "data/filtered.parquet", "filter", "split")
FILTERED_CHECKS = _artifact("filtered checks", "data/filtered.checks.json", "filter")
FILTER_CACHE = _artifact("filter LLM cache", "data/cache/llm/filter", "filter", "filter")
FILTER_REPORT = _artifact("filter record", "reports/filter.json", "filter", "plot")

TRAIN = _artifact("train split", "data/split/train.parquet", "split", "count", "directions", "mask-eval", "cards", "steer")
TEST = _artifact("test split", "data/split/test.parquet", "split", "mask-eval")
SPLIT_CHECKS = _artifact("split checks", "data/split/checks.json", "split")

COUNTS = _artifact("activation counts", "data/counts/counts.safetensors", "count", "select", "directions", "mask-eval",
                   "cards")
COUNT_META = _artifact("count record", "data/counts/meta.json", "count", "plot")
COUNT_CHECKS = _artifact("count checks", "data/counts/checks.json", "count")

NEURONS = _artifact("selected neurons", "data/neurons/neurons.json", "select", "directions", "mask-eval", "cards", "steer",
                    "plot",
                    COMPARE, ATLAS, reader="emoneurons.io.neurons_file:parse_neurons")
NEURONS_CHECKS = _artifact("selection checks", "data/neurons/checks.json", "select")
NEURON_COUNTS = _artifact("neuron counts", "reports/metrics/neurons.json", "select", "plot")

DIRECTION_SUMS = _artifact("direction class sums", "data/directions/class_sums.safetensors", "directions")
DIRECTION_META = _artifact("directions meta", "data/directions/meta.json", "directions")
DIRECTIONS = _artifact("emotion directions", "reports/metrics/directions.json", "directions", "plot", ATLAS,
                       reader="emoneurons.io.directions_file:parse_directions")

EVAL = _artifact("mask-eval record", "reports/metrics/eval.json", "mask-eval", "plot", COMPARE, ATLAS,
                 reader="emoneurons.io.eval_file:parse_eval")
EVAL_CHECKS = _artifact("mask-eval checks", "reports/metrics/eval.checks.json", "mask-eval")
HEADLINE = _artifact("headline numbers", "reports/metrics/headline.json", "mask-eval")
SUMMARY = _artifact("dvc exp show numbers", "reports/metrics/summary.json", "mask-eval", "dvc exp show")

CARDS = _artifact("neuron cards", "reports/cards/cards.json", "cards", "plot", ATLAS,
                  reader="emoneurons.io.cards_file:parse_cards")
CARDS_CHECKS = _artifact("cards checks", "reports/cards/checks.json", "cards")
CARDS_PAGE = _artifact("cards page", "reports/cards/index.html", "cards")

STEER = _artifact("steering record", "reports/steer/steer.json", "steer", "plot", ATLAS,
                  reader="emoneurons.io.steer_file:parse_steer")
STEER_CHECKS = _artifact("steering checks", "reports/steer/checks.json", "steer")
STEER_FIGURE = _artifact("steering figure", "reports/steer/steering.png", "steer")
STEER_CACHE = _artifact("steer LLM cache", "data/cache/llm/steer", "steer", "steer")

FIGURES = _artifact("figures", "reports/figures", "plot")
PLOTS = _artifact("dvc plots data", "reports/plots", "plot", "dvc plots show")
REPORT = _artifact("report", "reports/report.md", "plot")
REPORT_PAGE = _artifact("report page", "reports/index.html", "plot")

# Every artifact above, in the order defined (the pipeline's).
ARTIFACTS: tuple[Artifact, ...] = tuple(value for value in list(globals().values()) if isinstance(value, Artifact))


def registry_table() -> str:
    """The registry as a fixed-width table, one artifact per line in pipeline order."""
    rows = [("artifact", "path", "written by", "typed reader", "read by")]
    rows += [(a.name, a.path, a.writer, (a.reader or "-").removeprefix("emoneurons.io."), ", ".join(a.readers) or "-")
             for a in ARTIFACTS]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows) + "\n"


if __name__ == "__main__":
    print(registry_table(), end="")
