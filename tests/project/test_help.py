"""`emoneurons --help`, each subcommand's and each stage script's --help read cleanly at a fixed
terminal width: no line breaks mid-sentence, nothing cropped, one line per command in the overview.

The rules, on the text typer renders (rich, no colour) at 80 and 120 columns:
- a hard break: two lines of one paragraph (the description above the boxes) or of one help cell
  (inside a box) where the second line's first word would have fit at the end of the first: rich
  wraps at words, so only a line break carried from the source ends a line that early. A cell's
  next line that starts typer's own items (`[default: ...]`, `[required]`, `[env var: ...]`) is a
  new item, not a break;
- cropped: rich's ellipsis (…) anywhere, a word too long for its column cut short;
- the overview: each command of `emoneurons --help` is one row of the Commands box.
"""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from emoneurons.cli import app
from emoneurons.runtime.stage_run import stage_app
from helpers.stage_runner import REPO, stage_main

WIDTHS = (80, 120)
TYPER_ITEMS = re.compile(r"\[(default|env var|required)\b")
BOX_ROW = re.compile(r"^│ (.*) │$")


def render(command, args: list[str], width: int) -> str:
    result = CliRunner().invoke(command, [*args, "--help"], env={"COLUMNS": str(width),
                                                                  "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    # typer fixes its width once, from TERMINAL_WIDTH, at its first help: that would override COLUMNS
    assert {len(line) for line in result.output.splitlines() if line.strip()} == {width}, "rendered at another width"
    return result.output


def _boxes(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(title, the inner text of each row) of each box (╭─ title ─╮ ... ╰─╯)."""
    boxes, title, rows = [], None, []
    for line in lines:
        if line.startswith("╭"):
            title, rows = line.strip("╭╮─ "), []
        elif line.startswith("╰"):
            boxes.append((title, rows))
            title = None
        elif title is not None and (row := BOX_ROW.match(line.rstrip())):
            rows.append(row.group(1))
    return boxes


def _paragraphs(lines: list[str]) -> list[list[str]]:
    """The description's paragraphs: runs of non-blank lines outside the boxes, Usage left out."""
    paragraphs, current = [], []
    for line in lines:
        text = line.strip()
        if not text or line.startswith(("╭", "│", "╰")) or text.startswith("Usage:"):
            if current:
                paragraphs.append(current)
            current = []
        else:
            current.append(text)
    return paragraphs + ([current] if current else [])


def help_faults(text: str, width: int) -> list[str]:
    """Each hard break and each cropped word in one rendered --help (the rules above)."""
    lines = text.splitlines()
    faults = [f"cropped: {line.strip()!r}" for line in lines if "…" in line]
    for paragraph in _paragraphs(lines):
        for first, second in zip(paragraph, paragraph[1:]):
            if len(first) + 1 + len(second.split()[0]) <= width - 2:  # the description's padding: 1 each side
                faults.append(f"hard break after {first!r}")
    for title, rows in _boxes(lines):
        for previous, row in zip(rows, rows[1:]):
            column = len(row) - len(row.lstrip())
            if column == 0 or TYPER_ITEMS.match(row.lstrip()):
                continue  # a new entry, or typer's own item of the same entry
            cell = previous[column:].rstrip()
            if cell and len(cell) + 1 + len(row.split()[0]) <= len(row) - column:
                faults.append(f"hard break in {title} after {cell!r}")
    return faults


def overview_faults(text: str) -> list[str]:
    """Each command of the overview that takes more than one row of the Commands box."""
    commands = next(rows for title, rows in _boxes(text.splitlines()) if title == "Commands")
    return [f"more than one line: {previous.split()[0]!r}" for previous, row in zip(commands, commands[1:]) if row.startswith(" ")]


def _box(title: str, rows: list[str], width: int) -> list[str]:
    return [f"╭─ {title} ".ljust(width - 1, "─") + "╮", *(f"│ {row.ljust(width - 4)} │" for row in rows), "╰".ljust(width - 1, "─") + "╯"]


def test_the_rules_see_a_hard_break_a_crop_and_a_two_line_command():
    width = 46
    options = _box("Options", ["--out   <path>  folder for the figures",
                               "                [default: reports]",  # typer's item: not a break
                               "--in    <path>  a cell that breaks",
                               "                early",  # "early" fits after "breaks"
                               "--long  <path>  a cell wrapped where it must",
                               "                go on",
                               "--x     <str>   a word cut (embedded-gemma…"], width)
    text = "\n".join([" Usage: x [OPTIONS]", "", " One paragraph whose line", " breaks early.", "",
                      " A paragraph that rich wrapped at its width as",
                      " it must.", "", *options])
    assert help_faults(text, width) == ["cropped: '│ --x     <str>   a word cut (embedded-gemma… │'",
                                        "hard break after 'One paragraph whose line'",
                                        "hard break in Options after 'a cell that breaks'"]
    commands = _box("Commands", ["pull   one line", "atlas  two", "       lines", "sweep  one"], width)
    assert overview_faults("\n".join(commands)) == ["more than one line: 'atlas'"]
    assert overview_faults("\n".join(_box("Commands", ["pull   one line", "atlas  one"], width))) == []


@pytest.mark.parametrize("width", WIDTHS)
def test_emoneurons_help_reads_cleanly(width):
    overview = render(app, [], width)
    assert help_faults(overview, width) == []
    assert overview_faults(overview) == []
    commands = list(typer.main.get_command(app).commands)
    assert commands and all(f"│ {name} " in overview for name in commands)
    for name in commands:
        page = render(app, [name], width)
        assert help_faults(page, width) == [], name


STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py"))


@pytest.mark.parametrize("width", WIDTHS)
def test_each_stage_help_says_what_the_stage_does_and_reads_cleanly(width):
    for stage in STAGES:
        main = stage_main(stage)
        page = render(stage_app(main), [], width)
        assert help_faults(page, width) == [], stage
        summary = main.__globals__["__doc__"].split("\n\n")[0].split()
        assert " ".join(summary[:4]) in " ".join(page.split()), stage  # the docstring is the help's text
