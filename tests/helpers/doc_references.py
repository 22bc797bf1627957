"""What README.md and docs/*.md name, read out of their Markdown, and what the repository has, for
tests/project/test_docs.py. The rules (what counts as a reference) are stated there.

One `Doc` per Markdown file: its code (inline spans and fenced blocks, with line numbers), its
links and its headings' anchors. `prose_words` counts what a reader reads, for a word budget."""

from __future__ import annotations

import re
import shlex
import subprocess
import types
import typing
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel

from helpers.stage_runner import REPO

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
DOTTED = r"[a-z_][a-z0-9_]*(?:\[\])?(?:\.[a-z_][a-z0-9_]*(?:\[\])?)+"
PARAMS_SPAN = re.compile(rf"({DOTTED})(?:\s*[=:].*)?")
# A dotted name that ends like a file is a file (`eval.json`), never a params key.
FILE_ENDINGS = {"json", "yaml", "yml", "md", "py", "parquet", "html", "png", "svg", "txt", "safetensors", "gz", "lock",
                "in", "toml", "csv", "jsonl", "sh", "sbatch", "cfg", "ini", "log", "gguf", "bin", "pt", "whl"}
PATH_SPAN = re.compile(r"\.{0,2}[\w.-]+(?:/[\w.*-]+)*/?(?::[\w.]+)?")


@dataclass
class Doc:
    path: Path
    text: str
    folder: Path  # where its relative links start
    code: list[tuple[int, str, bool]] = field(default_factory=list)  # (line, text, fenced)
    links: list[tuple[int, str]] = field(default_factory=list)  # (line, target)
    anchors: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(REPO)) if self.path.is_relative_to(REPO) else self.path.name


def read_doc(path: Path, folder: Path | None = None) -> Doc:
    """A Markdown file's code, links and anchors: fenced blocks are code only (no links, no
    headings in them); inline code is code, and a link inside it is no link. `folder`: where its
    relative links start (its own folder unless told)."""
    doc = Doc(path, path.read_text(encoding="utf-8"), folder or path.parent)
    fence: str | None = None
    slugs: dict[str, int] = {}
    for number, line in enumerate(doc.text.splitlines(), start=1):
        opened = FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1) == fence:
                fence = None
            else:
                doc.code.append((number, line, True))
            continue
        if opened:
            fence = opened.group(1)
            continue
        doc.code += [(number, m.group(2).strip(), False) for m in INLINE_CODE.finditer(line)]
        prose = INLINE_CODE.sub(lambda m: "\0" * len(m.group(0)), line)  # links inside code spans are not links
        doc.links += [(number, m.group(2)) for m in LINK.finditer(prose)]
        doc.anchors |= set(HTML_ANCHOR.findall(line))
        if heading := HEADING.match(line):
            slug = github_slug(heading.group(2))
            doc.anchors.add(slug if slug not in slugs else f"{slug}-{slugs[slug]}")
            slugs[slug] = slugs.get(slug, 0) + 1
    return doc


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text (code without backticks, a link's
    text, no emphasis marks), lower-cased, every character but letters, digits, `_`, `-` and
    spaces dropped, spaces made hyphens (github-slugger's rule)."""
    text = LINK.sub(lambda m: m.group(1), heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|\*|~~)", "", text)
    kept = "".join(ch for ch in text.lower()
                    if ch in " -_" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc")
    return kept.replace(" ", "-")


def prose_words(doc: Doc) -> int:
    """Words a reader reads: the text outside fenced code blocks, link targets and markup left out."""
    lines, fence = [], None
    for line in doc.text.splitlines():
        opened = FENCE.match(line)
        if fence is not None:
            fence = None if opened and opened.group(1) == fence else fence
            continue
        if opened:
            fence = opened.group(1)
            continue
        lines.append(LINK.sub(lambda m: m.group(1), line))
    return sum(1 for word in " ".join(lines).split() if re.search(r"\w", word))


# --- What the repository has ------------------------------------------------------------------


@cache
def make_targets() -> frozenset[str]:
    """The Makefile's targets: `name:` at the start of a line (not `name :=`, a variable)."""
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        if found := re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line):
            targets |= set(found.group(1).split())
    return frozenset(targets)


@cache
def cli_options() -> dict[str, frozenset[str]]:
    """Each `emoneurons` subcommand and its options (every spelling, --help included)."""
    import typer

    from emoneurons.cli import app

    group = typer.main.get_command(app)
    return {name: frozenset(opt for param in command.params for opt in (*param.opts, *param.secondary_opts)) | {"--help"}
            for name, command in group.commands.items()}


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: itself, or inside Annotated, Optional, unions, tuples."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated, tuple, list):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def params_key_exists(key: str) -> bool:
    """`key` (dotted; `[]` after a list's name) is a field of the typed params (params.py)."""
    from emoneurons.params import Params

    models: list[type[BaseModel]] = [Params]
    for segment in key.replace("[]", "").split("."):
        fields = [m.model_fields[segment] for m in models if segment in m.model_fields]
        if not fields:
            return False
        models = [m for f in fields for m in _models(f.annotation)]
    return True


@cache
def params_sections() -> frozenset[str]:
    from emoneurons.params import Params

    return frozenset(Params.model_fields)


@cache
def tracked_paths() -> frozenset[str]:
    """Every file git tracks and every folder above one, relative to the repository root."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    paths = set()
    for file in filter(None, files):
        parts = file.split("/")
        paths |= {"/".join(parts[:k]) for k in range(1, len(parts) + 1)}
    return frozenset(paths)


@cache
def pipeline_outputs() -> frozenset[str]:
    """What dvc.yaml's stages write (outs, metrics, plots), relative to the repository root."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outs = set()
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                outs |= set(entry) if isinstance(entry, dict) else {entry}
    return frozenset(o.rstrip("/") for o in outs)


@cache
def written_paths() -> frozenset[str]:
    """Where the pipeline and the commands write or read outside git: dvc.yaml's outputs, the
    paths params.yaml names (filter.emoprism.path) and the folders `emoneurons` commands write
    by default (reports/compare, reports/atlas)."""
    from emoneurons.cli import app

    def strings(value: object) -> Iterator[str]:
        if isinstance(value, dict):
            yield from (s for v in value.values() for s in strings(v))
        elif isinstance(value, list):
            yield from (s for v in value for s in strings(v))
        elif isinstance(value, str) and "/" in value:
            yield value

    import typer

    defaults = {str(param.default) for command in typer.main.get_command(app).commands.values() for param in command.params
                if isinstance(param.default, Path) and str(param.default) != "."}
    return pipeline_outputs() | frozenset(strings(yaml.safe_load((REPO / "params.yaml").read_text()))) | frozenset(defaults)


@cache
def git_ignored(path: str) -> bool:
    """A path .gitignore keeps out of git: a local or generated file (.dvc/config.local)."""
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO).returncode == 0


def path_exists(path: str) -> bool:
    """A path a doc names is in the repository (tracked, from its root, from src/emoneurons/ or
    from tests/), is written outside git (`written_paths`: under one or above one) or is one
    .gitignore keeps out (a local or generated file). A `*` matches within a segment."""
    path = path.split(":")[0].rstrip("/").removeprefix("./")
    if "*" in path:
        folder = path[: path.index("*")].rpartition("/")[0]
        if any(folder == out or folder.startswith(out + "/") for out in written_paths()):
            return True  # files a stage writes into its output folder
        pattern = re.compile("[^/]*".join(map(re.escape, path.split("*"))) + "$")
        return any(p.startswith(prefix) and pattern.match(p[len(prefix):])
                   for prefix in ("", "src/emoneurons/", "tests/") for p in tracked_paths())
    if any(prefix + path in tracked_paths() for prefix in ("", "src/emoneurons/", "tests/")):
        return True
    return any(path == out or path.startswith(out + "/") or out.startswith(path + "/") for out in written_paths()) \
        or git_ignored(path)


@cache
def path_roots() -> frozenset[str]:
    """The first segments a repository path starts with: the root's entries, src/emoneurons's
    packages and tests/'s folders (docs name modules from the package: `neurons/reference.py`)."""
    roots = {p.split("/")[0] for p in tracked_paths() | pipeline_outputs()}
    for prefix in ("src/emoneurons/", "tests/"):
        roots |= {p[len(prefix):].split("/")[0] for p in tracked_paths() if p.startswith(prefix)}
    return frozenset(roots)


# --- What a doc names ---------------------------------------------------------------------------


def commands(code: str) -> Iterator[list[str]]:
    """The commands in a line of code: split at `&&`, `||`, `;` and `|`, a `#` comment and a
    `$ ` prompt left out, shell words (quotes removed), a `<placeholder>` one word, leading
    VAR=value assignments dropped."""
    code = re.sub(r"(^|\s)#.*$", "", code)
    code = re.sub(r"<[^<>]*>", "<placeholder>", code)
    for part in re.split(r"&&|\|\||;|\|", code):
        try:
            words = shlex.split(part.strip().removeprefix("$ "))
        except ValueError:  # an unbalanced quote: prose, not a command
            continue
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
            words = words[1:]
        if words:
            yield words


def set_params(words: list[str]) -> Iterator[str]:
    """The keys of `-S key=value` / `--set-param key=value` / `--set-param=key=value` in a command."""
    for i, word in enumerate(words):
        if word in ("-S", "--set-param") and i + 1 < len(words):
            yield words[i + 1].split("=")[0]
        elif word.startswith("--set-param="):
            yield word.removeprefix("--set-param=").split("=")[0]
