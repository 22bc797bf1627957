"""report.md's section "Emotion neurons vs emotion words" (eval.keyword_control): per emotion the
unmodified accuracy with and without the NRC cue words, the paired effect of the emotion's neurons
and of their random control on each version, and the keyword verdict."""

from __future__ import annotations

from emoneurons.report.document.blocks import Block, Heading, Paragraph, Table
from emoneurons.report.document.number_formats import ci_plain, count, number, p_value
from emoneurons.report.results.run import RunMetrics


def _accuracy(side: dict) -> str:
    low, high = side["ci95_unmodified"]
    return f"{number(side['accuracy_unmodified'])} {ci_plain(low, high)}"


def keyword_section(run: RunMetrics) -> list[Block]:
    control = run.eval.keyword_control
    if not control:
        return []
    removal = control["removal"]
    tokens = removal.get("tokens_lost")
    lost = f", {count(tokens['total'])} tokens in all" if tokens else ""
    rows = tuple(
        (emotion, _accuracy(v["with_words"]), _accuracy(v["without_words"]),
         number(v["with_words"]["mask_effect"]), number(v["with_words"]["control_effect"]), p_value(v["with_words"]["p_holm"]),
         number(v["without_words"]["mask_effect"]), number(v["without_words"]["control_effect"]),
         p_value(v["without_words"]["p_holm"]), f"**{v['verdict']}**")
        for emotion, v in control["emotions"].items())
    return [
        Heading("Emotion neurons vs emotion words"),
        Paragraph(
            f"Every condition ran again on the test dialogues with each emotion cue word of the {control['lexicon']} "
            f"replaced by `{removal['placeholder']}`: {count(removal['with_cues'])} of {count(removal['dialogues'])} test "
            f"dialogues had cue words ({count(removal['cue_words'])} words{lost}; {count(removal['no_other_word'])} had no "
            f"other word and were kept). Unmodified accuracy {number(control['accuracy_unmodified']['with_words'])} with the "
            f"words, {number(control['accuracy_unmodified']['without_words'])} without. Effects: the masked emotion's "
            f"paired mean effect (as in the section above) of its neurons at the ratio of select.top_rate, all layers, and "
            f"of their random control. Rule: {control['rule']}"),
        Table(("emotion", "accuracy with words (95% CI)", "accuracy without words (95% CI)", "effect with", "control with",
               "Holm p with", "effect without", "control without", "Holm p without", "verdict"), rows,
              "Per emotion: does the emotion neurons' effect survive without the emotion words?",
              (False, True, True, True, True, True, True, True, True, False)),
    ]
