#!/usr/bin/env bash
# Two revisions' `make run` from fresh clones, side by side, and their results compared: every
# output hash dvc.lock records, then every file under those outputs byte for byte. A change meant
# to leave the results alone (a refactor, a move) is checked this way: run the revision before it
# and the revision after it (a merge of exactly that revision, so nothing else differs).
# Each clone gets its own DVC remote (nothing is pulled from an earlier run: both compute it all).
# Not a test: each `make run` takes ~10 minutes on 2 idle cores, both run at once.
#   bash bench/same_results.sh REV_BEFORE REV_AFTER [work dir, default a new /tmp/same_results.XXXX]
# Prints the compared hashes and files and exits 1 when any differs.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=$1 AFTER=$2
WORK=${3:-$(mktemp -d /tmp/same_results.XXXX)}
mkdir -p "$WORK"
ORIGIN=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir)

run() {  # run <name> <rev>: a fresh clone of <rev> in $WORK/<name>, `make run` with a private remote
  local dir="$WORK/$1" start
  git clone -q --no-local --no-checkout "$ORIGIN" "$dir/clone"
  git -C "$dir/clone" checkout -q --detach "$2"
  start=$(date +%s)
  if (cd "$dir/clone" && make run REMOTE="$dir/remote" >"$dir/run.log" 2>&1); then
    echo "$1 ($(git -C "$dir/clone" rev-parse --short HEAD)): make run $(( $(date +%s) - start )) s"
  else
    echo "$1: make run FAILED after $(( $(date +%s) - start )) s (log: $dir/run.log)"; tail -5 "$dir/run.log"; return 1
  fi
}

echo "work dir: $WORK; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
run before "$BEFORE" & first=$!
run after "$AFTER" & second=$!
wait $first && wait $second
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$WORK/after/clone/.venv/bin/python" - "$WORK/before/clone" "$WORK/after/clone" <<'EOF'
import filecmp, sys
from pathlib import Path

import yaml

before, after = (Path(p) for p in sys.argv[1:3])


def outs(root: Path) -> dict[str, str]:
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {o["path"]: o.get("md5") for stage in stages.values() for o in stage.get("outs", [])}


a, b = outs(before), outs(after)
differ = sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
print(f"dvc.lock outs: {len(a)} before, {len(b)} after, {len(a.keys() & b.keys()) - len(set(differ) & a.keys() & b.keys())} equal"
      + (f"; differ: {', '.join(differ)}" if differ else ""))
files = sorted({f.relative_to(before) for p in a for f in ([before / p] if (before / p).is_file() else (before / p).rglob("*"))
                if f.is_file()})
changed = [str(f) for f in files if not (after / f).is_file() or not filecmp.cmp(before / f, after / f, shallow=False)]
print(f"files under the outs: {len(files)}, byte-identical: {len(files) - len(changed)}"
      + (f"; differ: {', '.join(changed)}" if changed else ""))
sys.exit(1 if differ or changed else 0)
EOF
