"""report.md as blocks, section by section in the order the report shows them (each section in
report/document/sections/); the offline HTML page renders the same blocks."""

from __future__ import annotations

from emoneurons.report.document.blocks import Block, Heading, Paragraph
from emoneurons.report.document.sections.figures import (
    figure1_section,
    figure2_section,
    figure3_section,
    figure4_section,
    figure14_section,
    figure15_section,
)
from emoneurons.report.document.sections.keywords import keyword_section
from emoneurons.report.document.sections.paper import paper_section
from emoneurons.report.document.sections.run import baseline_section, run_section, table1_section
from emoneurons.report.document.sections.specificity import specificity_section
from emoneurons.report.results.run import RunMetrics, model_name, params_digest
from emoneurons.report.results.sweeps import accuracy_changes


def build_report(run: RunMetrics) -> list[Block]:
    top_rate = run.neurons.top_rate
    changes = accuracy_changes(run.eval)
    blocks: list[Block] = [
        Heading("Emotion neurons: run report", 1),
        Paragraph(
            f"Model `{model_name(run)}`, params digest `{params_digest(run.params)}` "
            f"(sha256 of the validated params.yaml, first 12 hex digits). Reproduces Lee et al., "
            f"*Do Large Language Models Have \"Emotion Neurons\"?* (Findings of ACL 2025)."
        ),
    ]
    blocks += run_section(run, top_rate)
    blocks += baseline_section(run)
    blocks += table1_section(run)
    blocks += figure1_section(run, top_rate)
    blocks += figure2_section(run, top_rate)
    blocks += figure3_section(run, changes)
    blocks += figure4_section(changes, top_rate)
    blocks += specificity_section(run)
    blocks += keyword_section(run)
    blocks += figure14_section(run, top_rate)
    blocks += figure15_section(run, top_rate)
    blocks += paper_section(run, top_rate, changes)
    return blocks
