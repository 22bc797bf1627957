"""The pipeline at the paper's data volume (a benchmark, not a test): a seeded synthetic file with
EmoPrism's schema, record count and label counts, a tiny random Llama saved to a folder, and the
DVC pipeline run on them in a scratch project, at several fractions of the volume.

    .venv/bin/python bench/scale_run.py                                  # 10%, 30%, 100% of 293,725 records, every stage
    .venv/bin/python bench/scale_run.py --fractions 0.01,0.03 --until count   # filter, split, count only
    .venv/bin/python bench/scale_run.py --records 4000 --fractions 1      # a quick check
    .venv/bin/python bench/scale_run.py --fractions 0.1 --kill-count-after 60   # SIGKILL count once, resume it
    .venv/bin/python bench/scale_run.py --fractions 1 -S directions.enabled=false  # a params value on top of the run's

Per fraction, in `--out/<fraction>/`: `emoprism.json` (the synthetic file, kept for reruns),
`project/` (a git + DVC project holding the repository's tracked files, params.yaml set as below),
`stages.jsonl` (one line per stage process: wall seconds, peak RSS, peak PSS of its process tree, exit code), `repro.log` (dvc's
output) and `result.json` (the fraction's figures). A fraction whose result.json exists is not run
again: a killed benchmark resumes where it stopped (DVC itself skips the stages already done), and
the summary table at the end reads every result.json in `--out`.

How a stage is measured: DVC runs each stage as `python stages/<name>.py`; a `python` put first on
PATH runs the real interpreter as its child and records the child's wall time and peak resident
set size (getrusage of its children: the stage process and anything it forked and waited for; the
largest, not their sum), and the peak over time of the PSS summed over the stage's process and
its descendants, sampled every 0.2 s (/proc/<pid>/smaps_rollup: a page shared by mask-eval's forked
workers counts once in the sum, where each worker's RSS counts it whole). count's tokens/s are its counted tokens (data/counts/meta.json) per second
of the whole stage (model load and tokenizing included).

The run's params (params.yaml with): filter.source emoprism (min_agree 3, the paper's rule),
split.test_fraction 0.05, model.id the tiny model's folder (4 layers, hidden 64, FFN 256,
SmolLM2-135M's tokenizer from the embedded package), eval.ratios [0.01], eval.layer_ranges [all];
everything else as params.yaml has it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import typer
import yaml

from emoneurons.params import ParamsError, parse_params
from emoneurons.runtime.atlas_runs import AtlasRunError, parse_set_params, set_param

REPO = Path(__file__).resolve().parents[1]
STAGES = ["augment", "generate", "filter", "split", "count", "select", "directions", "mask-eval", "cards", "steer", "plot"]
SCRIPTS = {"augment": "augment", "generate": "generate", "filter": "filter", "split": "split", "count": "count",
           "select": "select_neurons", "directions": "directions", "mask-eval": "mask_eval", "cards": "cards", "steer": "steer", "plot": "plot"}

# The release's label counts (the paper's Table 1: 293,725 dialogues).
RELEASE_COUNTS = {"anger": 49_015, "disgust": 49_232, "fear": 50_166, "happiness": 55_054, "sadness": 51_549,
                  "surprise": 38_709}
JUDGES = ("gpt-4o-mini", "gemini-1.5-flash", "claude-3-haiku")

# Words the synthetic dialogues are made of: ordinary conversation around a topic, with an emotion's
# cue words in some turns (as the paper's generated dialogues have), so the tokenizer sees real text.
CUES = {
    "anger": ["furious", "so angry", "outraged", "fed up", "livid", "annoyed beyond words"],
    "disgust": ["disgusting", "revolting", "gross", "sickening", "repulsive", "nauseating"],
    "fear": ["terrified", "scared", "afraid", "nervous", "frightened", "anxious"],
    "happiness": ["thrilled", "so happy", "delighted", "overjoyed", "glad", "cheerful"],
    "sadness": ["heartbroken", "so sad", "miserable", "down", "devastated", "lonely"],
    "surprise": ["shocked", "amazed", "stunned", "astonished", "surprised", "speechless"],
}
OPENERS = ["Honestly,", "You know,", "I have to say,", "Well,", "Listen,", "To be fair,", "I mean,", "Look,",
           "Believe me,", "Right,", "Oh,", "So,"]
SUBJECTS = ["the whole thing with {topic}", "what happened at the {topic} meeting", "my cousin's take on {topic}",
            "the news about {topic}", "that article on {topic}", "our plans around {topic}",
            "the way people talk about {topic}", "last weekend's {topic} event", "the {topic} club"]
MIDDLES = ["made me feel {cue}", "left me {cue}", "has me {cue} all day", "got me {cue} when I heard it",
           "is why I am {cue} right now", "keeps me {cue} every time I think about it"]
PLAIN = ["I did not expect so many people to show up and ask questions about it",
         "we spent the whole afternoon going over every detail again and again",
         "my friends keep bringing it up whenever we meet for coffee on Sundays",
         "there were photos everywhere and everyone seemed to have an opinion",
         "the organisers changed the schedule twice without telling anyone",
         "I called my sister afterwards and we talked for almost an hour",
         "it reminded me of something that happened when we were kids",
         "nobody could explain why it turned out the way it did"]
REPLIES = ["Really?", "I know what you mean.", "That sounds like a lot.", "Tell me more.", "Wait, seriously?",
           "I can imagine.", "Oh no.", "No way!", "That makes sense.", "Hmm, I see."]


def emotion_counts(records: int) -> dict[str, int]:
    """Per emotion, the release's share of `records` (largest remainders, so they sum to it)."""
    total = sum(RELEASE_COUNTS.values())
    exact = {e: records * n / total for e, n in RELEASE_COUNTS.items()}
    counts = {e: int(x) for e, x in exact.items()}
    for e in sorted(exact, key=lambda e: counts[e] - exact[e])[: records - sum(counts.values())]:
        counts[e] += 1
    return counts


def _dialogue(rng: random.Random, topic: str, emotion: str) -> str:
    turns = []
    for turn in range(rng.randint(6, 12)):
        speaker = "AB"[turn % 2]
        if turn % 2 and rng.random() < 0.5:
            text = rng.choice(REPLIES) + " " + rng.choice(PLAIN).capitalize() + "."
        else:
            subject = rng.choice(SUBJECTS).format(topic=topic)
            cue = rng.choice(CUES[emotion] if rng.random() < 0.8 else CUES[rng.choice(list(CUES))])
            text = f"{rng.choice(OPENERS)} {subject} {rng.choice(MIDDLES).format(cue=cue)}"
            text += f", and {rng.choice(PLAIN)}." if rng.random() < 0.7 else "."
            if rng.random() < 0.2:
                text += f" {rng.choice(PLAIN).capitalize()}."
        turns.append(f"{speaker}: {text}")
    return "\n".join(turns)


def _judge_answer(rng: random.Random, emotion: str) -> str:
    """A judge's answer as the release has them: mostly the intended emotion, in several spellings."""
    roll = rng.random()
    label = emotion if roll < 0.9 else rng.choice([e for e in RELEASE_COUNTS if e != emotion])
    if roll > 0.985:
        return "I cannot tell"
    return rng.choice([label, label.capitalize(), f"{label}.", f"[{label}]"])


def synthetic_records(records: int, seed: int = 0) -> Iterator[dict]:
    """`records` EmoPrism-shaped records (topic, dialogue, theme, three judge columns, label), the
    release's label shares, in a seeded random order; generated one at a time."""
    rng = random.Random(seed)
    topics = [t.strip() for t in (REPO / "data" / "seeds" / "topics.txt").read_text().splitlines() if t.strip()]
    themes = [e for e, n in emotion_counts(records).items() for _ in range(n)]
    rng.shuffle(themes)
    for theme in themes:
        topic = rng.choice(topics)
        answers = {judge: _judge_answer(rng, theme) for judge in JUDGES}
        yield {"topic": topic, "dialogue": _dialogue(rng, topic, theme), "theme": theme, **answers,
               "label": theme if rng.random() < 0.99 else rng.choice(list(RELEASE_COUNTS))}


def write_emoprism(path: Path, records: int, seed: int = 0) -> None:
    """The records as one JSON array, one record a line, written without holding them."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as out:
        out.write("[\n")
        for index, record in enumerate(synthetic_records(records, seed)):
            out.write((",\n" if index else "") + json.dumps(record))
        out.write("\n]\n")
    tmp.replace(path)


def save_tiny_model(folder: Path) -> None:
    """A randomly initialised Llama (4 layers, hidden 64, FFN 256) with SmolLM2-135M's tokenizer
    (from the embedded GGUF package), saved to `folder` for `model.id`."""
    if (folder / "config.json").exists():
        return
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from emoneurons.model.embedded import SMOLLM2_GGUF, smollm2_dir
    from emoneurons.model.loading import _converted_dir

    # The dequantised copy model.id `embedded` leaves in the user cache has the tokenizer in seconds;
    # read from the GGUF it takes a minute on a loaded machine. The same tokenizer either way.
    converted = _converted_dir(str(smollm2_dir()), SMOLLM2_GGUF)
    if (converted / "tokenizer.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(converted))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir()), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(folder)


def run_params(model_dir: Path, settings: Sequence[str] = ()) -> dict:
    """params.yaml with the run's values (the module docstring), then each `key.path=value` of
    `settings` as `dvc exp run -S` reads it, validated as the stages validate params (a bad one:
    typer.BadParameter, one line); model.id is `model_dir` unless a setting names one."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["filter"].update(source="emoprism", min_agree=3)
    params["split"]["test_fraction"] = 0.05
    params["eval"].update(ratios=[0.01], layer_ranges=["all"])
    try:
        overrides = parse_set_params(settings)
        for key, value in overrides.items():
            set_param(params, key, value)
        parse_params(params, source="scale run")  # model.id still params.yaml's: the folder may not exist yet
    except (AtlasRunError, ParamsError) as error:
        raise typer.BadParameter(f"--set: {error}") from None
    if "model.id" not in overrides:
        params["model"]["id"] = str(model_dir)
    return params


SHIM = '''#!{python}
"""`python` for the stages DVC runs: the real interpreter as a child, its wall time, peak RSS and
peak PSS summed over its process tree logged."""
import json, os, resource, subprocess, sys, threading, time
start = time.time()
child = subprocess.Popen([{python!r}, *sys.argv[1:]])
with open({log!r}, "a") as log:
    log.write(json.dumps({{"event": "start", "argv": sys.argv[1:], "pid": child.pid, "time": start}}) + "\\n")
peak_pss = [0]
def tree(pid):
    try:
        kids = open(f"/proc/{{pid}}/task/{{pid}}/children").read().split()
    except OSError:
        return [pid]
    return [pid] + [p for kid in kids for p in tree(int(kid))]
def pss_kib(pid):
    try:
        for line in open(f"/proc/{{pid}}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
def sample():  # RSS counts a page shared by forked workers once per process; PSS splits it among them
    while child.poll() is None:
        peak_pss[0] = max(peak_pss[0], sum(pss_kib(p) for p in tree(child.pid)))
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
code = child.wait()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open({log!r}, "a") as log:
    log.write(json.dumps({{"event": "end", "argv": sys.argv[1:], "pid": child.pid, "rc": code,
                          "wall_s": round(time.time() - start, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                          "peak_pss_tree_mib": round(peak_pss[0] / 1024, 1),
                          "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                          "load_avg_1min": round(os.getloadavg()[0], 2)}}) + "\\n")
sys.exit(code if code >= 0 else 128 - code)
'''


def _git(project: Path, *args: str, env: dict) -> None:
    subprocess.run(["git", *args], cwd=project, env=env, check=True, capture_output=True)


def make_project(project: Path, model_dir: Path, data_file: Path, env: dict, settings: list[str] = ()) -> None:
    """A git + DVC project with the repository's tracked files (not tests/, bench/, docs/), the
    run's params.yaml and the synthetic file as data/external/emoprism.json."""
    if (project / ".git").is_dir():
        return
    tmp = project.with_name(project.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    for name in tracked:
        source = REPO / name
        if source.is_file() and not name.startswith(("tests/", "bench/", "docs/")):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp / name)
    (tmp / "dvc.lock").unlink(missing_ok=True)
    (tmp / "params.yaml").write_text(yaml.safe_dump(run_params(model_dir, settings), sort_keys=False))
    os.link(data_file, tmp / "data" / "external" / "emoprism.json")  # a hard link: no second copy
    _git(tmp, "init", "-q", "-b", "main", env=env)
    _git(tmp, "add", "-A", ":!data/external/emoprism.json", env=env)
    _git(tmp, "commit", "-qm", "scale run", env=env)
    tmp.rename(project)


def _stage_of(argv: list[str]) -> str | None:
    script = Path(argv[0]).stem if argv else ""
    return next((stage for stage, name in SCRIPTS.items() if name == script), None)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _running_count(log: Path, since: float) -> int | None:
    for entry in reversed(read_log(log)):
        if entry["event"] == "start" and entry["time"] >= since and _stage_of(entry["argv"]) == "count":
            return entry["pid"]
    return None


def repro(project: Path, until: str, env: dict, log_file: Path, kill_count_after: float | None) -> dict:
    """`dvc repro <until>` in `project`; with `kill_count_after`, the count stage's process is sent
    SIGKILL that many seconds after it starts, then dvc repro runs again (count resumes)."""
    killed: dict = {}
    command = [sys.executable, "-m", "dvc", "repro", until]
    with log_file.open("a") as log:
        began = time.time()
        process = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        if kill_count_after is not None:
            while process.poll() is None and not killed:
                pid = _running_count(project.parent / "stages.jsonl", began)
                if pid is not None:
                    time.sleep(kill_count_after)
                    checkpoints = sorted(str(p.relative_to(project)) for p in (project / ".emoneurons").rglob("*") if p.is_file())
                    os.kill(pid, signal.SIGKILL)
                    killed = {"after_s": kill_count_after, "checkpoint_files": checkpoints}
                time.sleep(0.5)
        code = process.wait()
        if killed:
            log.write(f"\n--- count killed (SIGKILL) after {kill_count_after} s; dvc repro again ---\n")
            log.flush()
            code = subprocess.run(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"dvc repro {until} failed in {project} (exit {code}); see {log_file}")
    return killed


def stage_figures(entries: list[dict], project: Path, records: int) -> dict[str, dict]:
    """Per stage the last finished process's wall time and peak RSS, and what it processed."""
    figures: dict[str, dict] = {}
    for entry in entries:
        stage = _stage_of(entry["argv"])
        if entry["event"] == "end" and stage is not None:
            runs = figures.get(stage, {}).get("runs", 0) + 1
            figures[stage] = {"wall_s": entry["wall_s"], "peak_rss_mib": entry["peak_rss_mib"],
                              "peak_pss_tree_mib": entry.get("peak_pss_tree_mib"), "cpu_s": entry["cpu_s"],
                              "load_avg_1min_at_end": entry.get("load_avg_1min"), "rc": entry["rc"], "runs": runs}
    # The three full passes over the train split, each over the same tokens (count's): their rates
    # per second of wall time and per CPU second (the steadier figure on a shared machine).
    passes = {"count": (project / "data/counts/meta.json", lambda d: sum(d["tokens"].values())),
              # directions.enabled false: no pass, and no "summed" in directions.json
              "directions": (project / "reports/metrics/directions.json",
                             lambda d: sum(d["summed"]["tokens"].values()) if "summed" in d else None),
              "cards": (project / "reports/cards/cards.json", lambda d: d["tokens"])}
    for stage, (path, tokens_of) in passes.items():
        tokens = tokens_of(json.loads(path.read_text())) if stage in figures and path.exists() else None
        if tokens is not None:
            figures[stage].update(tokens=tokens, tokens_per_s=round(tokens / figures[stage]["wall_s"], 1),
                                  tokens_per_cpu_s=round(tokens / max(figures[stage]["cpu_s"], 0.1), 1))
    report = project / "reports" / "filter.json"
    if "filter" in figures and report.exists():
        figures["filter"].update(records=records, kept=json.loads(report.read_text())["kept"])
    return figures


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def run_fraction(out: Path, fraction: float, records: int, until: str, model_dir: Path, env: dict,
                 kill_count_after: float | None, seed: int, settings: list[str] = ()) -> dict:
    folder = out / (f"{fraction:g}" + ("-killed" if kill_count_after is not None else ""))
    folder.mkdir(parents=True, exist_ok=True)
    n = round(records * fraction)
    data_file = folder / "emoprism.json"
    if not data_file.exists():
        began = time.perf_counter()
        write_emoprism(data_file, n, seed)
        print(f"{folder.name}: wrote {n:,} records ({data_file.stat().st_size / 2**20:.1f} MiB) in "
              f"{time.perf_counter() - began:.1f} s", flush=True)
    project = folder / "project"
    make_project(project, model_dir, data_file, env, settings)
    shim_dir = folder / "shim"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "python"
    shim.write_text(SHIM.format(python=sys.executable, log=str(folder / "stages.jsonl")))
    shim.chmod(0o755)
    # PYTHONPATH: the stages import the project's own copy of the library (ahead of the editable
    # install's work tree), so editing the repository while a benchmark runs changes nothing in it.
    stage_env = {**env, "PATH": f"{shim_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
                 "PYTHONPATH": str(project / "src")}
    before, revision = machine(), commit()  # the revision copied into the project, not the tree's at the end
    began = time.time()
    killed = repro(project, until, stage_env, folder / "repro.log", kill_count_after)
    result = {
        "fraction": fraction, "records": n, "bytes": data_file.stat().st_size, "until": until, "set": list(settings),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": revision,
        "machine_before": before, "machine_after": machine(), "wall_s": round(time.time() - began, 1),
        "stages": stage_figures(read_log(folder / "stages.jsonl"), project, n),
    }
    if killed:
        result["killed_count"] = killed | _resumed(folder / "repro.log", out / f"{fraction:g}" / "project", project)
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _resumed(log: Path, uninterrupted: Path, project: Path) -> dict:
    """What the resumed count said, and whether its counts equal an uninterrupted run's (when one
    of the same fraction is in --out)."""
    lines = [line for line in log.read_text().splitlines() if "resumes after" in line]
    same = None
    ours, theirs = project / "data/counts/counts.safetensors", uninterrupted / "data/counts/counts.safetensors"
    if ours.exists() and theirs.exists():
        same = ours.read_bytes() == theirs.read_bytes()
    return {"resumed": lines, "counts_equal_uninterrupted": same}


def summary(out: Path) -> str:
    """The table of every result.json in `out`: per stage and fraction, wall time, tokens/s, peak RSS."""
    results = sorted((json.loads(p.read_text()) for p in out.glob("*/result.json")),
                     key=lambda r: (r["fraction"], "killed_count" in r))
    if not results:
        return "no results yet"
    lines = ["| stage | " + " | ".join(f"{r['fraction']:g} ({r['records']:,} records){' killed' if 'killed_count' in r else ''}"
                                        for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for stage in STAGES:
        cells = []
        for r in results:
            s = r["stages"].get(stage)
            if s is None:
                cells.append("")
                continue
            rate = f", {s['tokens_per_s']:,.0f} tok/s ({s['tokens_per_cpu_s']:,.0f}/CPU s)" if "tokens_per_s" in s else ""
            pss = f" (PSS of its processes {s['peak_pss_tree_mib']:,.0f})" if s.get("peak_pss_tree_mib") else ""
            cells.append(f"{s['wall_s']:.1f} s{rate}, {s['peak_rss_mib']:,.0f} MiB{pss}")
        if any(cells):
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    loads = ", ".join(f"{r['fraction']:g}: {r['machine_before']['load_avg'][0]}-{r['machine_after']['load_avg'][0]}" for r in results)
    lines.append(f"\nload average (1 min) before-after each run: {loads}; commit(s) {', '.join(sorted({r['commit'] for r in results}))}")
    return "\n".join(lines)


def main(
    records: int = typer.Option(sum(RELEASE_COUNTS.values()), help="records at 100% (default: the release's 293,725)"),
    fractions: str = typer.Option("0.1,0.3,1", help="comma-separated fractions of --records to run"),
    until: str = typer.Option("plot", help=f"the last stage to run (dvc repro <stage>); one of {', '.join(STAGES)}"),
    out: Path = typer.Option(Path("bench/scale-runs"), help="folder for the runs (one subfolder per fraction)"),
    kill_count_after: float = typer.Option(None, help="SIGKILL the count stage this many seconds after it starts, "
                                                      "then rerun (it resumes from its checkpoint)"),
    seed: int = typer.Option(0, help="seed of the synthetic records"),
    settings: list[str] = typer.Option([], "--set", "-S", help="key.path=value on top of the run's params "
                                       "(repeatable), e.g. -S directions.enabled=false"),
) -> None:
    if until not in STAGES:
        raise typer.BadParameter(f"--until {until!r}; allowed: {', '.join(STAGES)}")
    shares = [float(x) for x in fractions.split(",") if x.strip()]
    if not shares or not all(0 < x <= 1 for x in shares):
        raise typer.BadParameter(f"--fractions {fractions!r}: numbers in (0, 1]")
    run_params(Path("model"), settings)  # a bad --set is one line before any work
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "GX_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false", "GIT_AUTHOR_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    model_dir = out / "tiny-llama"
    save_tiny_model(model_dir)
    for fraction in shares:
        folder = out / (f"{fraction:g}" + ("-killed" if kill_count_after is not None else ""))
        if (folder / "result.json").exists():
            print(f"{folder.name}: done before (result.json); not run again", flush=True)
            continue
        print(f"{folder.name}: dvc repro {until} ...", flush=True)
        result = run_fraction(out, fraction, records, until, model_dir, env, kill_count_after, seed, settings)
        stages = ", ".join(f"{name} {s['wall_s']:.0f} s / {s['peak_rss_mib']:.0f} MiB" for name, s in result["stages"].items())
        print(f"{folder.name}: {result['records']:,} records in {result['wall_s']:.0f} s: {stages}", flush=True)
    print(summary(out))


if __name__ == "__main__":
    typer.run(main)
