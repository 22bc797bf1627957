"""A document's blocks (document/blocks.py) as Markdown: report.md, atlas.md, compare.md."""

from __future__ import annotations

from collections.abc import Sequence

from emoneurons.report.document.blocks import Block, Bullets, Heading, Image, Paragraph, Table


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
