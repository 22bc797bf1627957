"""reports/index.html: the report as one static page that renders offline (figures embedded as
base64 PNG; no scripts, no external fetches, unlike `dvc plots show`'s page that loads vega)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from emoneurons.report.document.blocks import Block, Bullets, Heading, Image, Paragraph, Table

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def inline(text: str) -> str:
    """The report's inline markup (`code`, **bold**, *italic*, [link](path)) as HTML, everything else escaped."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", escaped)
    # [text](relative/path): a link to a page beside the report (the neuron cards); no URLs with a scheme.
    return re.sub(r"\[([^\]]+)\]\(([\w./#-]+)\)", r'<a href="\2">\1</a>', escaped)


def _table(table: Table) -> str:
    numeric = table.numeric or tuple(False for _ in table.headers)
    head = "".join(f"<th>{inline(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{inline(c)}</td>' if n else f"<td>{inline(c)}</td>"
            for c, n in zip(row, numeric)
        ) + "</tr>\n"
        for row in table.rows
    )
    caption = f"<caption>{inline(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _image(image: Image, figures_dir: Path) -> str:
    path = figures_dir / f"{image.name}.png"
    if not path.exists():
        return f"<p><em>({html.escape(image.alt)}: figure missing)</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(image.alt)}" src="data:image/png;base64,{data}">'
            f"</figure>")


def render_html(blocks: Sequence[Block], figures_dir: str | Path, title: str) -> str:
    """One self-contained page: the report's blocks, figures read from `figures_dir`."""
    figures_dir = Path(figures_dir)
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Image):
            parts.append(_image(block, figures_dir))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
