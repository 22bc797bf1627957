"""Files of the project read at a git revision or a DVC experiment (through DVC for its outputs,
`git show` for git-tracked files), and the runs `emoneurons compare` reads that way."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emoneurons.errors import EmoneuronsError
from emoneurons.io.artifacts import EVAL, NEURONS, Artifact
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.records import RecordError, json_text
from emoneurons.report.compare.figures import RunAtRev

# What `emoneurons compare` reads of each run, in RunAtRev's order, each by its typed reader.
COMPARE_RECORDS: dict[Artifact, Callable[[Any, str], Any]] = {EVAL: parse_eval, NEURONS: parse_neurons}
WORKSPACE = "workspace"  # the files on disk, as `dvc plots diff` calls them


class RevisionError(EmoneuronsError, ValueError):
    """A revision or file that cannot be read; said in one line naming both."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)


def resolve_rev(repo: str | Path, rev: str) -> str:
    """The commit of a git revision, or of a DVC experiment named `rev` (refs/exps/.../<name>)."""
    repo = Path(repo)
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode == 0:
        return found.stdout.strip()
    refs = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps")
    matches = [line.split()[1] for line in refs.stdout.splitlines()
               if line.split()[0].rsplit("/", 1)[-1] == rev]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RevisionError(f"{rev}: names {len(matches)} experiments; give a commit instead")
    raise RevisionError(f"{rev}: not a git revision or DVC experiment name in {repo}")


def read_at_rev(repo: str | Path, rev: str, path: str) -> str:
    """A file's text at a revision: through DVC (DVC-tracked or git-tracked), else `git show`
    (git-tracked cache: false metrics); `workspace` reads the file on disk."""
    repo = Path(repo)
    if rev == WORKSPACE:
        try:
            return (repo / path).read_text()
        except FileNotFoundError:
            raise RevisionError(f"{rev}: {path} not found") from None
    commit = resolve_rev(repo, rev)
    try:
        import dvc.api

        return dvc.api.read(path, repo=str(repo), rev=commit, mode="r")
    except Exception as error:  # any DVC failure: a plain git repo, a git-only file, no cache
        dvc_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    shown = _git(repo, "show", f"{commit}:{path}")
    if shown.returncode == 0:
        return shown.stdout
    raise RevisionError(f"{rev}: cannot read {path} (dvc: {dvc_error}; git: "
                        f"{shown.stderr.strip().splitlines()[-1] if shown.stderr.strip() else 'failed'})")


def load_run(repo: str | Path, rev: str) -> RunAtRev:
    """The records `emoneurons compare` draws of the run at `rev`, each read by its typed reader and
    named `<rev>: <path>` in errors."""
    records = []
    for artifact, parse in COMPARE_RECORDS.items():
        source = f"{rev}: {artifact.path}"
        try:
            records.append(parse(json_text(read_at_rev(repo, rev, artifact.path), source), source))
        except RecordError as error:
            raise RevisionError(str(error)) from None
    return RunAtRev(rev, *records)
