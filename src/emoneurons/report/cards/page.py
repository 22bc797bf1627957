"""reports/cards/index.html: the neuron cards as one static page (inline CSS and SVG, no scripts,
nothing fetched), one section per emotion, one card per neuron."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.report.style import EMOTION_COLORS

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.4; }
nav a { margin-right: 1em; }
section.emotion { margin-top: 2em; border-top: 3px solid var(--c); }
section.emotion > h2 { color: var(--c); }
p.empty { font-style: italic; color: #555; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
article.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.9em; width: 100%; box-sizing: border-box; }
article.card h3 { margin: 0 0 0.3em; font-size: 1.05em; }
.facts { color: #444; font-size: 0.9em; margin: 0 0 0.4em; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
ol.contexts { margin: 0; padding-left: 1.4em; font-size: 0.88em; flex: 1 1 520px; }
ol.contexts li { margin-bottom: 0.35em; }
.ctx { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
mark { background: #ffd54f; padding: 0 1px; border-radius: 2px; }
.label { display: inline-block; min-width: 5.5em; font-weight: 600; }
.act { color: #666; font-variant-numeric: tabular-nums; margin-right: 0.5em; }
table.tokens { border-collapse: collapse; font-size: 0.85em; }
table.tokens th, table.tokens td { border: 1px solid #ddd; padding: 0.1em 0.5em; }
table.tokens td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 0.2em; white-space: pre; }
"""

_BAR_WIDTH = 150
_ROW = 15


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def p_bars(P: Mapping[str, float]) -> str:
    """An inline SVG bar chart of a neuron's P per emotion (bars scaled to the largest)."""
    top = max(P.values(), default=0.0) or 1.0
    rows = []
    for i, emotion in enumerate(EMOTIONS):
        value = float(P.get(emotion, 0.0))
        y = i * _ROW
        width = round(_BAR_WIDTH * value / top, 1)
        rows.append(
            f'<text x="0" y="{y + 11}" font-size="11">{emotion}</text>'
            f'<rect x="68" y="{y + 2}" width="{width}" height="11" fill="{EMOTION_COLORS[emotion]}"><title>{emotion}: P = {value:.4f}</title></rect>'
            f'<text x="{72 + width}" y="{y + 11}" font-size="10" fill="#444">{value:.3f}</text>'
        )
    height = _ROW * len(EMOTIONS)
    return (f'<svg class="pbars" role="img" aria-label="P per emotion" width="{68 + _BAR_WIDTH + 40}" height="{height}" '
            f'viewBox="0 0 {68 + _BAR_WIDTH + 40} {height}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>')


def _context(context: Mapping[str, Any]) -> str:
    before = ("…" if context.get("clipped_before") else "") + context["before"]
    after = context["after"] + ("…" if context.get("clipped_after") else "")
    return (f'<li><span class="label" style="color:{EMOTION_COLORS.get(context["label"], "#222")}">{_e(context["label"])}</span>'
            f'<span class="act">{context["activation"]:.2f}</span>'
            f'<span class="ctx">{_e(before)}<mark>{_e(context["token"])}</mark>{_e(after)}</span></li>')


def _tokens(tokens: list[Mapping[str, Any]]) -> str:
    if not tokens:
        return '<p class="facts">No token seen often enough that it fires on.</p>'
    rows = "".join(f'<tr><td><code>{_e(t["token"])}</code></td><td class="num">{t["lift"]:.2f}</td>'
                   f'<td class="num">{t["active"]}/{t["count"]}</td></tr>' for t in tokens)
    return ('<table class="tokens"><thead><tr><th>token</th><th>lift</th><th>fires/seen</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _card(card: Mapping[str, Any]) -> str:
    rate = card["fires"] / card["tokens"] if card["tokens"] else 0.0
    contexts = "".join(_context(c) for c in card["contexts"]) or "<li>no context</li>"
    return (
        f'<article class="card" id="L{card["layer"]}-N{card["index"]}" data-layer="{card["layer"]}" data-index="{card["index"]}">'
        f'<h3>layer {card["layer"]}, neuron {card["index"]}</h3>'
        f'<p class="facts">entropy {card["entropy"]:.3f} · fires (gate &gt; 0) on {rate:.1%} of {card["tokens"]} train tokens</p>'
        f'<div class="row"><div>{p_bars(card["P"])}{_tokens(card["top_tokens"])}</div>'
        f'<ol class="contexts">{contexts}</ol></div></article>'
    )


def _section(emotion: str, entry: Mapping[str, Any], top_rate: str) -> str:
    cards = entry["cards"]
    head = f'<section class="emotion" id="{emotion}" style="--c:{EMOTION_COLORS[emotion]}"><h2>{emotion}</h2>'
    if not cards:
        return head + (f'<p class="empty">No {emotion} neurons were selected at top_rate {_e(top_rate)}, '
                       "so there are no cards for it.</p></section>")
    shown = (f'<p class="facts">{entry["selected"]} {emotion} neurons selected; the {len(cards)} where {emotion} has the '
             "largest share of P (normalised over emotions), then lowest entropy, are shown.</p>")
    return head + shown + '<div class="cards">' + "".join(_card(c) for c in cards) + "</div></section>"


def render_cards_html(cards_json: Mapping[str, Any]) -> str:
    """The whole page from cards.json."""
    top_rate = str(cards_json["top_rate"])
    nav = " ".join(f'<a href="#{e}">{e} ({len(cards_json["emotions"][e]["cards"])})</a>' for e in EMOTIONS)
    intro = (
        f"<p>Each card is one FFN neuron of {_e(cards_json['model'])} selected for the emotion (select.top_rate "
        f"{_e(top_rate)}): its activation probability P per emotion (the share of that emotion's train tokens on "
        "which its gate is positive) and the entropy of P normalised over emotions; the "
        f"{cards_json['contexts']} train dialogues where its gate activation peaks highest (the peak token "
        f"highlighted, {cards_json['window']} tokens either side, the dialogue's label first); and the tokens it "
        f"fires on most often relative to its overall rate (lift; tokens seen at least {cards_json['min_token_count']} "
        f"times). From {cards_json['dialogues']} train dialogues, {cards_json['tokens']} tokens.</p>"
    )
    sections = "\n".join(_section(e, cards_json["emotions"][e], top_rate) for e in EMOTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Neuron cards: {_e(cards_json['model'])}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<h1>Neuron cards</h1>\n{intro}\n<nav>{nav}</nav>\n{sections}\n'
        '<p><a href="../index.html">back to the report</a></p>\n</body>\n</html>\n'
    )
