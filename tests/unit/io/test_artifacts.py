"""The registry of the pipeline's artifacts (io/artifacts.py) says what dvc.yaml and the code do:
each stage's outs are the artifacts it writes, each stage's data deps the artifacts it reads, the
stage scripts' default paths are the registry's, compare and the atlas read what it lists through
the typed readers it names, and docs/ARCHITECTURE.md shows its table as the command prints it."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from emoneurons.io import artifacts
from emoneurons.io.artifacts import ARTIFACTS, ATLAS, COMPARE, DIRECTIONS, TRACKED, registry_table
from emoneurons.io.records import RecordError
from emoneurons.runtime.atlas_runs import ATLAS_RECORDS
from emoneurons.runtime.revisions import COMPARE_RECORDS
from helpers.stage_runner import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _paths(entries: list) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def _under(path: str, folder: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(folder) or PurePosixPath(folder) in PurePosixPath(path).parents


def _data_deps(stage: dict) -> list[str]:
    return [d for d in _paths(stage["deps"]) if not d.startswith(("src/", "stages/"))]


def test_each_stage_writes_exactly_its_outs():
    for name, stage in STAGES.items():
        outs = _paths(stage.get("outs", [])) + _paths(stage.get("metrics", []))
        written = [a.path for a in ARTIFACTS if a.writer == name]
        assert all(any(_under(path, out) for out in outs) for path in written), name
        assert all(any(_under(path, out) for path in written) for out in outs), (name, outs, written)
    assert {a.writer for a in ARTIFACTS} == {*STAGES, TRACKED}


def test_each_stage_reads_exactly_its_data_deps():
    for name, stage in STAGES.items():
        deps = _data_deps(stage)
        read = [a.path for a in ARTIFACTS if name in a.readers and a.writer != name]  # a cache is its own stage's
        assert all(any(_under(path, dep) for dep in deps) for path in read), (name, deps, read)
        assert all(any(_under(path, dep) or _under(dep, path) for path in read) for dep in deps), (name, deps, read)


def _stage_defaults(script: Path) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location(f"stage_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the scripts run nothing on import (`if __name__ == "__main__"`)
    options = inspect.signature(module.main).parameters.values()
    return {p.name: p.default.default for p in options if isinstance(p.default.default, Path)}


@pytest.mark.parametrize("script", sorted((REPO / "stages").glob("*.py")), ids=lambda p: p.stem)
def test_the_stage_scripts_default_paths_are_the_registrys(script):
    known = {a.path for a in ARTIFACTS} | {str(a.folder) for a in ARTIFACTS}
    defaults = _stage_defaults(script)
    unknown = {name: str(path) for name, path in defaults.items()
               if str(path) not in known and name not in ("params", "checkpoints")}
    assert defaults and unknown == {}


def test_compare_and_the_atlas_read_what_the_registry_lists_through_its_typed_readers():
    assert set(COMPARE_RECORDS) == {a for a in ARTIFACTS if COMPARE in a.readers}
    assert set(ATLAS_RECORDS) | {DIRECTIONS} == {a for a in ARTIFACTS if ATLAS in a.readers}  # directions: when there
    for records in (COMPARE_RECORDS, ATLAS_RECORDS):
        for artifact, parse in records.items():
            module, function = artifact.reader.split(":")
            assert getattr(importlib.import_module(module), function) is parse


def test_each_typed_reader_names_its_file_by_the_registrys_path():
    typed = [a for a in ARTIFACTS if a.reader]
    assert {a.path for a in typed} == {"data/neurons/neurons.json", "reports/metrics/eval.json", "reports/cards/cards.json",
                                       "reports/steer/steer.json", "reports/metrics/directions.json"}
    for artifact in typed:
        module, function = artifact.reader.split(":")
        parse = getattr(importlib.import_module(module), function)
        assert inspect.signature(parse).parameters["source"].default == artifact.path
        with pytest.raises(RecordError, match=rf"^{artifact.path}: not a JSON object$"):
            parse([])


def test_the_registry_has_one_entry_per_path_and_name():
    assert len({a.path for a in ARTIFACTS}) == len({a.name for a in ARTIFACTS}) == len(ARTIFACTS)
    assert artifacts.EVAL.at("out") == Path("out/eval.json") and artifacts.TRAIN.folder == Path("data/split")


def test_the_command_prints_the_registry_and_architecture_md_shows_it():
    printed = subprocess.run([sys.executable, "-m", "emoneurons.io.artifacts"], capture_output=True, text=True,
                             check=True).stdout
    assert printed == registry_table()
    lines = printed.splitlines()
    assert lines[0].split() == ["artifact", "path", "written", "by", "typed", "reader", "read", "by"]
    neurons = next(line for line in lines if "data/neurons/neurons.json" in line)
    assert neurons.split()[3:6] == ["select", "neurons_file:parse_neurons", "directions,"]
    assert printed in (REPO / "docs" / "ARCHITECTURE.md").read_text(), \
        "docs/ARCHITECTURE.md's artifact table differs from `python -m emoneurons.io.artifacts`: paste its output"
