"""The report as a list of blocks (headings, paragraphs, bullets, tables, figures), so report.md and
the offline HTML page show the same; and its Markdown rendering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Text with `code` and **bold** inline markup only."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = field(default=())  # right-aligned columns


@dataclass(frozen=True)
class Image:
    """A figure of reports/figures/ by name (figure1 -> figures/figure1.png)."""

    name: str
    alt: str


Block = Heading | Paragraph | Bullets | Table | Image


def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            out.append(_markdown_table(block))
        elif isinstance(block, Image):
            out.append(f"![{block.alt}](figures/{block.name}.png)")
    return "\n\n".join(out) + "\n"


def _markdown_table(table: Table) -> str:
    numeric = table.numeric or tuple(False for _ in table.headers)
    rule = ["---:" if n else "---" for n in numeric]
    lines = [
        "| " + " | ".join(_cell(h) for h in table.headers) + " |",
        "| " + " | ".join(rule) + " |",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows),
    ]
    caption = f"*{table.caption}*\n\n" if table.caption else ""
    return caption + "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
