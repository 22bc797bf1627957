"""README.md and docs/*.md stay true: what they name exists, and their links land.

What counts as a name (only code is read: inline `code` spans and the lines of fenced blocks;
prose words are never taken for names):
- a make target: each word after `make` in a command (not an -option, not a VAR=value) is a
  target of the Makefile;
- an emoneurons command: the word after `emoneurons` in a command is one of its subcommands, and
  every -option after it is one of that subcommand's (`--opt=value` read as `--opt`);
- a params key: an inline span that is a dotted name (optionally `= value` or `: value` after
  it) whose first part is a params section (`eval.control_draws`, `steer.alphas=[0, 4]`), unless
  its last part is a file ending (`eval.json`); and the key of every `-S key=value` /
  `--set-param key=value`. It must be a field of the typed params (params.py), `[]` after a list;
- a repository path: a code word of /-separated word-character segments (a `:name` after it
  allowed, a `*` within a segment), whose first segment is a root entry of the repository, a
  package of src/emoneurons/ or a folder of tests/. It is tracked by git (from the root, from
  src/emoneurons/ or from tests/), or a pipeline output in dvc.yaml (under one or above one), or
  a folder an `emoneurons` command writes by default. `<...>`, `{...}` and `$` mark placeholders,
  not paths;
- a link: every relative target of [text](target) or ![text](target) outside code resolves from
  the doc's folder, and its #anchor is a heading of the target (GitHub's slug: the heading's text
  lower-cased, all but letters, digits, `_`, `-` and spaces dropped, spaces made hyphens, `-1`,
  `-2` after a repeat) or an <a id/name> in it. Links with a scheme (https:) are not followed.

`prose_words` counts the words a reader reads (fenced code left out): the README's word budget
is one assertion on it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.doc_references import (
    DOTTED,
    FILE_ENDINGS,
    PARAMS_SPAN,
    PATH_SPAN,
    Doc,
    cli_options,
    commands,
    github_slug,
    make_targets,
    params_key_exists,
    params_sections,
    path_exists,
    path_roots,
    prose_words,
    read_doc,
    set_params,
)
from helpers.stage_runner import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"[<>{}$]")


@dataclass(frozen=True)
class Reference:
    """One name or link a doc gives, and why it is wrong (None: it exists)."""

    doc: str
    line: int
    kind: str  # make target, emoneurons command, params key, path, link
    name: str
    fault: str | None = None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.kind} {self.name!r}: {self.fault}"


def command_references(doc: Doc) -> Iterator[Reference]:
    """make targets, emoneurons subcommands and their options, and -S params keys."""
    for line, code, _ in doc.code:
        for words in commands(code):
            program = words[0].removeprefix(".venv/bin/")
            if program == "make":
                for target in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
                    yield Reference(doc.name, line, "make target", target,
                                    None if target in make_targets() else "not in the Makefile")
            elif program == "emoneurons" and len(words) > 1 and re.fullmatch(r"[a-z][\w-]*", words[1]):
                options = cli_options().get(words[1])
                yield Reference(doc.name, line, "emoneurons command", words[1], None if options else "no such subcommand")
                for option in (w.split("=")[0] for w in words[2:] if w.startswith("-") and options):
                    yield Reference(doc.name, line, "emoneurons option", f"{words[1]} {option}",
                                    None if option in options else "no such option")
            if program in ("emoneurons", "dvc"):
                for key in (k for k in set_params(words) if not PLACEHOLDER.search(k)):
                    yield Reference(doc.name, line, "params key", key, None if params_key_exists(key) else "not in params.py")


def params_references(doc: Doc) -> Iterator[Reference]:
    for line, code, fenced in doc.code:
        span = PARAMS_SPAN.fullmatch(code)
        if fenced or not span:
            continue
        key = span.group(1)
        if key.split(".")[0].removesuffix("[]") in params_sections() and key.split(".")[-1] not in FILE_ENDINGS:
            yield Reference(doc.name, line, "params key", key, None if params_key_exists(key) else "not in params.py")


def path_words(code: str) -> list[str]:
    """The words of a line of code that are repository paths (the rule above)."""
    words = [w.strip(",;()'\"[]") for w in code.split()]
    return [w for w in words if "/" in w and not PLACEHOLDER.search(w) and PATH_SPAN.fullmatch(w)
            and w.removeprefix("./").split("/")[0] in path_roots()]


def path_references(doc: Doc) -> Iterator[Reference]:
    for line, code, _ in doc.code:
        for word in path_words(code):
            yield Reference(doc.name, line, "path", word,
                            None if path_exists(word) else "neither in the repository nor written by the pipeline")


def link_references(doc: Doc) -> Iterator[Reference]:
    for line, target in doc.links:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: ... (not followed: the tests run offline)
        file, _, anchor = target.partition("#")
        if not file:  # an anchor in the doc itself
            yield Reference(doc.name, line, "link", target, None if anchor in doc.anchors else "no such heading here")
            continue
        resolved = REPO / file.lstrip("/") if file.startswith("/") else doc.folder / file
        if not resolved.exists():
            fault = "no such file"
        elif anchor and (resolved.suffix != ".md" or anchor not in read_doc(resolved).anchors):
            fault = f"no heading or anchor {anchor!r} in {resolved.name}"
        else:
            fault = None
        yield Reference(doc.name, line, "link", target, fault)


def references(doc: Doc) -> list[Reference]:
    return [*command_references(doc), *params_references(doc), *path_references(doc), *link_references(doc)]


def faults(doc: Doc) -> list[str]:
    return [str(r) for r in references(doc) if r.fault]


# --- The rules on small texts --------------------------------------------------------------------


def sample(tmp_path: Path, text: str) -> Doc:
    """A doc written to tmp_path whose relative links start in docs/, as a page of the guide's do."""
    path = tmp_path / "SAMPLE.md"
    path.write_text(text, encoding="utf-8")
    return read_doc(path, folder=REPO / "docs")


def test_the_rules_find_a_wrong_name_of_each_kind_and_nothing_in_prose(tmp_path):
    doc = sample(tmp_path, "\n".join([
        "# Using it", "## Using it", "### `eval.ratios` and **bold** (v2)",
        "Run `make run`, `make runn` or `make test PYTEST_ARGS=-x`; `emoneurons atlas --models a --jobs 2`,",
        "`emoneurons atlass`, `emoneurons sweep --job 2`, `dvc exp run -S eval.control_draws=2 -S eval.contrl_draws=3`.",
        "Keys: `eval.control_draws`, `eval.control_draw`, `filter.judges[].backend`, `steer.alphas=[0, 4]`,",
        "`eval.json` (a file), `neurons.reference` (a module), make runn and eval.contrl in prose.",
        "Paths: `stages/count.py`, `neurons/reference.py`, `data/counts/meta.json`, `reports/figures/*.png`,",
        "`stages/counts.py`, `neurons/references.py:f`, `stages/<name>.py`, `HuggingFaceTB/SmolLM2-135M`.",
        "[ok](ARCHITECTURE.md#the-layers-bottom-to-top) [ok](#using-it-1) [ok](#evalratios-and-bold-v2)",
        "[bad](ARCHITECTURE.md#no-such-heading) [bad](NOPE.md) [bad](#using-it-2) [web](https://example.org/x#y)",
        "`[not a link](NOPE.md)` `make setup PYTHON=<the python that has it>`",
        "```", "make run-it", "emoneurons compare a b --outt x", "src/emoneurons/   the library, not a command", "```",
    ]))
    assert faults(doc) == [
        "SAMPLE.md:4: make target 'runn': not in the Makefile",
        "SAMPLE.md:5: emoneurons command 'atlass': no such subcommand",
        "SAMPLE.md:5: emoneurons option 'sweep --job': no such option",
        "SAMPLE.md:5: params key 'eval.contrl_draws': not in params.py",
        "SAMPLE.md:14: make target 'run-it': not in the Makefile",
        "SAMPLE.md:15: emoneurons option 'compare --outt': no such option",
        "SAMPLE.md:6: params key 'eval.control_draw': not in params.py",
        "SAMPLE.md:9: path 'stages/counts.py': neither in the repository nor written by the pipeline",
        "SAMPLE.md:9: path 'neurons/references.py:f': neither in the repository nor written by the pipeline",
        "SAMPLE.md:11: link 'ARCHITECTURE.md#no-such-heading': no heading or anchor 'no-such-heading' in ARCHITECTURE.md",
        "SAMPLE.md:11: link 'NOPE.md': no such file",
        "SAMPLE.md:11: link '#using-it-2': no such heading here",
    ]
    checked = {(r.kind, r.name) for r in references(doc) if not r.fault}
    assert {("make target", "run"), ("make target", "test"), ("make target", "setup"), ("emoneurons option", "atlas --jobs"),
            ("params key", "filter.judges[].backend"), ("params key", "steer.alphas"), ("path", "reports/figures/*.png"),
            ("path", "neurons/reference.py"), ("link", "#evalratios-and-bold-v2")} <= checked


def test_github_slugs_and_prose_words(tmp_path):
    assert github_slug("The `eval.ratios` key: **bold**, [a link](x.md) & more!") == "the-evalratios-key-bold-a-link--more"
    assert github_slug("Scale (GPUs, nodes) — résumé_2") == "scale-gpus-nodes--résumé_2"
    doc = sample(tmp_path, "# Title\n\nOne [linked](a/b.md) word, `code` too.\n\n```\nnot counted here\n```\n- two\n")
    assert prose_words(doc) == 7  # Title, One, linked, word, code, too, two: the list dash is no word


def test_dotted_and_path_patterns_take_what_they_should():
    assert re.fullmatch(DOTTED, "filter.judges[].backend") and not re.fullmatch(DOTTED, "eval")
    assert PATH_SPAN.fullmatch("neurons/counting.py:activation_counts") and not PATH_SPAN.fullmatch("treeverse/dvc#10562")


# --- The docs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_what_the_docs_name_exists_and_their_links_land(path):
    assert faults(read_doc(path)) == []


def test_the_docs_give_names_of_every_kind():
    """The check above is not empty: the docs name make targets, emoneurons commands and options,
    params keys and paths, and link to each other (a reader that found none would pass anything)."""
    kinds = Counter(r.kind for path in DOCS for r in references(read_doc(path)))
    assert all(kinds[kind] >= 3 for kind in ("make target", "emoneurons command", "emoneurons option", "params key",
                                              "path", "link")), kinds


README_WORD_BUDGET = 1500


def test_the_readme_is_a_front_door_within_its_word_budget():
    """README.md says what it is, how to run it and what comes out, and links the guide: at most
    1,500 words a reader reads (fenced code, link targets and markup not counted)."""
    words = prose_words(read_doc(REPO / "README.md"))
    assert words <= README_WORD_BUDGET, f"README.md: {words} words, over its budget of {README_WORD_BUDGET}; move detail to docs/"
