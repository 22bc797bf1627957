"""dvc.yaml lists, for each stage, exactly its script and the library modules it imports
(transitively), so editing plotting code does not rerun counting and no used module is missed."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.stage_runner import REPO, stage_main

sys.path.insert(0, str(REPO / "tools"))
from dvc_deps import SRC, code_deps, generated, library_files  # noqa: E402  (tools/ is no package)


def covered(dep: str, deps: list[str]) -> bool:
    return any(dep == d or dep.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_depends_on_exactly_the_code_it_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = stage["cmd"].split()[-1]
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        code_deps = {d for d in deps if d.startswith(("src/", "stages/"))}
        needed = library_files(REPO / script) | {script}
        missing = sorted(n for n in needed if not covered(n, sorted(code_deps)))
        assert not missing, f"stage {name}: dvc.yaml deps miss {missing}"
        extra = sorted(d for d in code_deps if not any(covered(n, [d]) for n in needed))
        assert not extra, f"stage {name}: dvc.yaml deps list unused code {extra}"


def _option_default(script: Path, name: str) -> str:
    """The default of a stage's typer option `name` (`typer.Option(<path>, ...)`), from its main()."""
    return str(inspect.signature(stage_main(script.stem)).parameters[name].default.default)


def test_dvc_yaml_code_deps_are_what_make_deps_generates():
    """The committed deps are tools/dvc_deps.py's output: a module move is `make deps`, not ten edits."""
    text = (REPO / "dvc.yaml").read_text()
    assert generated(text) == text, "dvc.yaml's code deps differ from the imports: run `make deps`"
    stages = yaml.safe_load(text)["stages"]
    for name, stage in stages.items():
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        code = [d for d in deps if d.startswith(("src/", "stages/"))]
        assert code == code_deps(stage["cmd"].split()[-1]), name


def test_the_generator_rewrites_a_stale_deps_list_and_keeps_the_rest(tmp_path):
    text = (REPO / "dvc.yaml").read_text()
    stale = text.replace("    - src/emoneurons/params.py\n", "", 1).replace(
        "    - stages/count.py\n", "    - stages/count.py\n    - src/emoneurons/report/document/html.py\n", 1)
    assert stale != text and generated(stale) == text
    check = subprocess.run([sys.executable, str(REPO / "tools" / "dvc_deps.py"), "--check"], capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 0, check.stderr


def test_filter_depends_on_the_folder_imported_data_sets_must_live_in():
    external = _option_default(REPO / "stages/filter.py", "external")  # the stage names it; the library does not
    filter_deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["filter"]["deps"]
    assert external == "data/external" and external in filter_deps
    assert covered(yaml.safe_load((REPO / "params.yaml").read_text())["filter"]["emoprism"]["path"], [external])
    assert (REPO / external).is_dir()  # a missing dep folder would stop `dvc repro`


# --------------------------------------------------------------------------------------------
# Params: each stage reads params.yaml through `load_stage_params(path, keys)` (a view that raises
# on any other key at run time), or `load_params(path)` for the whole file; here the keys it
# passes, the keys its code reads and the stage's `params:` in dvc.yaml must be the same.

WHOLE_FILE = ""  # the key of a read (or declaration) of all of params.yaml


def declared_params(stage: dict) -> set[str]:
    keys: set[str] = set()
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            keys.add(entry)
        else:  # {file: [keys]}; no keys = the whole file
            (file, listed), = entry.items()
            assert file == "params.yaml", f"params from {file}: only params.yaml is read"
            keys |= set(listed) if listed else {WHOLE_FILE}
    return keys


def _chain(node: ast.AST) -> tuple[ast.AST, list[str]]:
    """The base of an attribute chain and its names: `a.b.c` -> (Name a, [b, c])."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    return node, names


def params_reads(source: str) -> tuple[set[str] | None, set[str]]:
    """(the keys passed to load_stage_params, or None for load_params's whole file; the dotted
    keys the code reads from the result). A read of a section (`settings.model` passed on) is the
    section's key; a bare use of the result is a read of every key it holds."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    passed: set[str] | None = None
    roots: dict[str, str] = {}  # variable -> the key prefix it holds
    loads = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        base, names = _chain(node.value)
        if not (isinstance(base, ast.Call) and isinstance(base.func, ast.Name)
                and base.func.id in ("load_params", "load_stage_params")):
            continue
        loads += 1
        if base.func.id == "load_stage_params":
            passed = set(ast.literal_eval(base.args[1]))
        for target in node.targets:
            assert isinstance(target, ast.Name), "assign load_stage_params(...) to one name"
            roots[target.id] = ".".join(names)
    assert loads == 1, f"expected one load_params/load_stage_params call, found {loads}"
    reads: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id in roots and isinstance(node.ctx, ast.Load)):
            continue
        top = node
        while isinstance(parents.get(top), ast.Attribute) and parents[top].value is top:
            top = parents[top]
        _, names = _chain(top)
        reads.add(".".join(part for part in (roots[node.id], *names) if part))
    return passed, reads


def covers(key: str, keys: set[str]) -> bool:
    return any(key == k or k == WHOLE_FILE or key.startswith(k + ".") for k in keys)


def params_problems(source: str, declared: set[str]) -> list[str]:
    passed, reads = params_reads(source)
    problems = []
    if passed is None and declared != {WHOLE_FILE}:
        problems.append("load_params reads the whole file: declare `params.yaml:` or use load_stage_params")
    if passed is not None and passed != declared:
        problems.append(f"load_stage_params keys {sorted(passed)} != dvc.yaml params {sorted(declared)}")
    problems += [f"reads {r or 'all params'} not declared in dvc.yaml" for r in sorted(reads) if not covers(r, declared)]
    problems += [f"declares {d or 'params.yaml'} that it never reads" for d in sorted(declared)
                 if not any(r == d or d == WHOLE_FILE or r.startswith(d + ".") for r in reads)]
    return problems


def test_every_stage_declares_exactly_the_params_it_reads():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = REPO / stage["cmd"].split()[-1]
        problems = params_problems(script.read_text(), declared_params(stage))
        assert not problems, f"stage {name} ({script.name}): {'; '.join(problems)}"


def test_the_params_check_catches_an_undeclared_read_and_an_unread_declaration():
    reads_model = (
        "settings = load_stage_params(params, ('augment',))\n"
        "if settings.augment.backend == 'hf':\n    backend(settings.model)\n"
    )
    assert params_problems(reads_model, {"augment"}) == ["reads model not declared in dvc.yaml"]
    assert params_problems(reads_model, {"augment", "model"}) == [
        "load_stage_params keys ['augment'] != dvc.yaml params ['augment', 'model']"]
    part = "settings = load_stage_params(params, ('select.top_rate', 'eval'))\nrun(settings.select.top_rate)\n"
    assert params_problems(part, {"select.top_rate", "eval"}) == ["declares eval that it never reads"]
    whole_section = "s = load_stage_params(p, ('select.top_rate',))\nrun(s.select)\n"
    assert params_problems(whole_section, {"select.top_rate"}) == [
        "reads select not declared in dvc.yaml", "declares select.top_rate that it never reads"]
    assert params_problems("s = load_params(p)\nrun(s)\n", {WHOLE_FILE}) == []


# Which stages rerun when a prompt is reworded. Figure 5's prompt lives in
# text/classification_prompt.py, apart from the chat-prompt code the judges share
# (text/chat_prompt.py), and EmoPrism's reader takes the dialogue format from text/dialogue_format.py,
# not from dataset/dialogues.py: each prompt reruns only the stages that import it.
PROMPT_STAGES = {
    "src/emoneurons/text/paper_prompts/augment.py": {"augment"},
    "src/emoneurons/text/paper_prompts/generate.py": {"generate"},
    "src/emoneurons/text/paper_prompts/label.py": {"filter", "steer"},  # steer: the filter's judges label its replies
    # cards and directions through counting (its text=prompt inputs), steer classifies its replies with it
    "src/emoneurons/text/paper_prompts/classify.py": {"count", "mask-eval", "cards", "directions", "steer"},
}


def test_rewording_a_prompt_reruns_only_the_stages_that_use_it():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    prompts = {str(p.relative_to(REPO)) for p in (SRC / "emoneurons/text/paper_prompts").glob("*.py") if p.read_text().strip()}
    assert prompts == set(PROMPT_STAGES)
    for prompt, expected in PROMPT_STAGES.items():
        dependent = {name for name, stage in stages.items()
                     if prompt in library_files(REPO / stage["cmd"].split()[-1])}
        assert dependent == expected, f"{prompt}: stages {sorted(dependent)}"
    import emoneurons.emotions

    assert not [name for name in vars(emoneurons.emotions) if "PROMPT" in name.upper()]  # every stage imports it
