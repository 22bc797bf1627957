"""A document as a list of blocks (headings, paragraphs, bullets, tables, figures), so the Markdown
(document/markdown.py) and the offline HTML page (document/html.py) show the same."""

from __future__ import annotations

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
