"""The real pipeline in a real DVC repo with a real local remote, on minimal params.

The model is a tiny random Llama saved to a local folder, so `model.id: <path>` is exercised
and the whole pipeline runs in about a minute. What is checked is DVC's behaviour that users
rely on: what reruns after which change, that nothing reruns when nothing changed, that a
second clone pulls a clean state, and that metrics and plots are visible to `dvc exp show`
and `dvc plots show`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emoneurons.emotions import EMOTIONS

REPO = Path(__file__).resolve().parents[1]
ALL_STAGES = ["augment", "generate", "filter", "split", "count", "select", "mask-eval", "cards", "steer", "plot"]
pytestmark = pytest.mark.slow


def minimal_params(model_dir: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(model_dir), batch_size=8)
    params["augment"].update(n_seed=4, rounds=1)
    params["generate"].update(per_pair=2)
    params["filter"] = {"min_agree": 1, "judges": [{"name": "lexicon", "backend": "lexicon"}]}
    params["split"]["test_fraction"] = 0.25
    params["eval"].update(shots=1, ratios=[0.01, 0.05], layer_ranges=["top", "all"], control_draws=1, bootstrap=50)
    params["cards"].update(top_neurons=2, contexts=2)
    params["steer"].update(alphas=[0, 4], prompts=2, max_new_tokens=4)
    return params


def run(args: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="t@example.com", DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", EMONEURONS_CACHE=str(tmp_path_factory.mktemp("cache")),
    )
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory, env, tiny_tokenizer) -> Path:
    """A fresh git+DVC project holding the repo's tracked files and a local remote, reproduced once."""
    from conftest import build_tiny_llama

    root = tmp_path_factory.mktemp("project")
    work, remote, model_dir = root / "work", root / "remote", root / "tiny-llama"
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)

    tracked = run(["git", "ls-files", "-co", "--exclude-standard"], REPO, env).stdout.split()
    for name in tracked:
        source = REPO / name
        if source.is_file() and not name.startswith(("tests/", "bench/", "docs/")):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    for generated in ("dvc.lock",):
        (work / generated).unlink(missing_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(minimal_params(model_dir), sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], work, env)
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "--local", "test", str(remote)], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "init"], work, env)

    first = run([sys.executable, "-m", "dvc", "repro"], work, env)
    assert stages_run(first.stdout) == ALL_STAGES, first.stdout
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "first run"], work, env)
    return work


def dvc(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], project, env)


def test_outputs_follow_the_contracts(project):
    eval_json = json.loads((project / "reports/metrics/eval.json").read_text())
    ids = {c["id"] for c in eval_json["conditions"]}
    assert "unmodified" in ids
    assert {"mask-anger-r0.01-all", "mask-surprise-r0.05-all", "mask-fear-r0.01-top"} <= ids
    assert any(c["control"] for c in eval_json["conditions"])
    neurons = json.loads((project / "data/neurons/neurons.json").read_text())
    assert {"0.01", "0.05"} <= set(neurons["ratios"])
    assert (project / "reports/report.md").read_text().strip()
    for figure in ("figure1", "figure2", "figure14", "steering"):
        assert (project / f"reports/figures/{figure}.png").stat().st_size > 1000
    cards = json.loads((project / "reports/cards/cards.json").read_text())
    assert set(cards["emotions"]) == set(EMOTIONS)
    page = (project / "reports/cards/index.html").read_text()
    assert page.count('<article class="card"') == sum(len(v["cards"]) for v in cards["emotions"].values())
    steer = json.loads((project / "reports/steer/steer.json").read_text())
    assert steer["alphas"] == [0, 4] and len(steer["unmodified"]["replies"]) == 2
    assert (project / "reports/steer/steering.png").stat().st_size > 1000
    assert 'href="cards/index.html"' in (project / "reports/index.html").read_text()


def test_second_repro_runs_nothing(project, env):
    again = dvc(project, env, "repro")
    assert stages_run(again.stdout) == []
    assert dvc(project, env, "status").stdout.strip().endswith("up to date.")


def test_exp_show_lists_the_accuracies_and_plots_render(project, env):
    shown = json.loads(dvc(project, env, "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "accuracy_unmodified" in text and "neurons_anger" in text
    plots = json.loads(dvc(project, env, "plots", "show", "--json").stdout)
    assert plots, "dvc plots show --json returned nothing"


def test_exp_run_top_rate_reruns_select_mask_eval_cards_steer_plot_only(project, env):
    result = dvc(project, env, "exp", "run", "-S", "select.top_rate=0.02")
    assert stages_run(result.stdout) == ["select", "mask-eval", "cards", "steer", "plot"], result.stdout


def test_exp_run_steer_alphas_reruns_steer_and_plot_only(project, env):
    result = dvc(project, env, "exp", "run", "-S", "steer.alphas=[0,2]")
    assert stages_run(result.stdout) == ["steer", "plot"], result.stdout


def test_exp_run_generate_seed_reruns_generate_and_everything_after(project, env):
    result = dvc(project, env, "exp", "run", "-S", "generate.seed=1")
    assert stages_run(result.stdout) == ALL_STAGES[1:], result.stdout


def test_compare_overlays_a_committed_run_and_an_experiment(project, env, tmp_path):
    """`emoneurons compare` reads DVC-tracked files (data/neurons) at a git revision from the cache."""
    experiments = json.loads(dvc(project, env, "exp", "show", "--json").stdout)
    assert experiments, "no experiments to compare"
    out = tmp_path / "compare"
    run([sys.executable, "-m", "emoneurons.cli", "compare", "HEAD", "workspace", "--out", str(out)], project, env)
    assert "HEAD" in (out / "compare.md").read_text()
    for figure in ("figure1", "figure2", "figure3"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000


def test_clone_that_pulled_is_clean_without_recomputing(project, env, tmp_path):
    # The clone checks out the committed run; experiments since then changed only the workspace.
    dvc(project, env, "push", "--all-commits")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    remote = run([sys.executable, "-m", "dvc", "remote", "list", "--local"], project, env).stdout.split()[1]
    dvc(clone, env, "remote", "add", "-d", "--local", "test", remote)
    dvc(clone, env, "pull")
    status = dvc(clone, env, "status")
    assert status.stdout.strip().endswith("up to date."), status.stdout
    assert stages_run(dvc(clone, env, "repro").stdout) == []
