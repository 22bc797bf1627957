#!/usr/bin/env bash
# What a new user on a plain Linux x86_64 machine gets: a fresh clone of this branch, the documented
# set-up (`make setup`), imports of torch, transformers and emoneurons, then `make run` to the end,
# with this machine's help hidden: the CPU wheel folder (/opt/wheels), every pip setting
# (/etc/pip.conf, /etc/xdg/pip with its constraints, ~/.config/pip, PIP_* variables), the local
# package mirrors (/opt/pypi*), uv's settings and cache (UV_* unset, an empty cache), and the home
# folder (a fresh one: no pip/uv/HF/emoneurons cache, no DVC remote). The only network is the
# package index. Kept: SSL_CERT_FILE/SSL_CERT_DIR, OpenSSL's own variables, where the network needs
# the machine's CA (this one intercepts TLS; uv's built-in roots do not know its issuer). Prints the times and what was downloaded (the fresh caches' sizes).
# Not a test: it downloads ~3 GB and `make run` takes minutes. Needs root (a private mount namespace).
#   bash bench/fresh_setup.sh [work dir, default a new /tmp/fresh_setup.XXXX]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

if [ -z "${FRESH_SETUP_HIDDEN:-}" ]; then
  WORK=${1:-$(mktemp -d /tmp/fresh_setup.XXXX)}
  mkdir -p "$WORK"
  # A private mount namespace: the bind mounts below are seen by this run only.
  exec unshare -m --propagation private env -i FRESH_SETUP_HIDDEN=1 HOME="$WORK/home" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb \
    PIP_CONFIG_FILE=/dev/null UV_CACHE_DIR="$WORK/uv-cache" \
    ${SSL_CERT_FILE:+SSL_CERT_FILE="$SSL_CERT_FILE"} ${SSL_CERT_DIR:+SSL_CERT_DIR="$SSL_CERT_DIR"} \
    bash "$0" "$WORK" "$REPO"
fi
WORK=$1 REPO=$2
mkdir -p "$WORK/home" "$WORK/uv-cache" "$WORK/empty"
: > "$WORK/empty-file"
for dir in /opt/wheels /opt/pypi /opt/pypi-more /etc/xdg/pip /root/.config/pip /root/.config/uv /etc/uv; do
  [ -d "$dir" ] && mount --bind "$WORK/empty" "$dir"
done
for file in /etc/pip.conf; do
  [ -f "$file" ] && mount --bind "$WORK/empty-file" "$file"
done
echo "hidden: $(ls -A /opt/wheels | wc -l) files in /opt/wheels, $(ls -A /etc/xdg/pip | wc -l) in /etc/xdg/pip; pip config: $(python3 -m pip config list 2>/dev/null | wc -l) settings; $(env | grep -c '^\(PIP\|UV\)_') PIP_*/UV_* variables (PIP_CONFIG_FILE=/dev/null, UV_CACHE_DIR empty)"
echo "python3: $(command -v python3) $(python3 --version 2>&1)"

now() { date +%s.%N; }
took() { printf '%.0f' "$(echo "$(now) - $1" | bc)"; }
BRANCH=$(git -C "$REPO" rev-parse --abbrev-ref HEAD)
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)

t=$(now)
git clone -q --no-local --branch "$BRANCH" "$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir)" "$WORK/clone"
cd "$WORK/clone"
echo "clone: $BRANCH at $COMMIT in $(took "$t") s"

t=$(now)
make setup > "$WORK/setup.log" 2>&1 || { tail -20 "$WORK/setup.log"; echo "make setup FAILED (log: $WORK/setup.log)"; exit 1; }
SETUP_S=$(took "$t")
echo "make setup: $SETUP_S s, variant $(cat .venv/.torch)"

t=$(now)
.venv/bin/python -c "
import torch, transformers, emoneurons
print(f'imports: torch {torch.__version__} (CUDA {torch.version.cuda}, GPU seen: {torch.cuda.is_available()}), transformers {transformers.__version__}, emoneurons from {emoneurons.__file__}')
x = torch.randn(64, 64); print('torch matmul ok:', float((x @ x).abs().sum()) > 0)
"
echo "imports: $(took "$t") s"

t=$(now)
make run > "$WORK/run.log" 2>&1 || { tail -20 "$WORK/run.log"; echo "make run FAILED after $(took "$t") s (log: $WORK/run.log)"; exit 1; }
RUN_S=$(took "$t")
echo "make run: $RUN_S s; $(grep -c '^Running stage' "$WORK/run.log") stages run; last lines:"
tail -3 "$WORK/run.log"

mib() { if [ -e "$1" ]; then du -sm "$1" | cut -f1; else echo 0; fi; }
echo "downloaded (fresh caches, unpacked): uv cache $(mib "$WORK/uv-cache") MiB, pip cache $(mib "$WORK/home/.cache/pip") MiB (pip fetches only uv's wheel); venv $(mib .venv) MiB"
echo "CUDA libraries in the venv: $(ls .venv/lib/python3.11/site-packages | grep -c '^nvidia_.*dist-info$') nvidia-* packages, $(du -smc .venv/lib/python3.11/site-packages/nvidia .venv/lib/python3.11/site-packages/triton 2>/dev/null | tail -1 | cut -f1) MiB (nvidia/ + triton/)"
echo "summary: setup $SETUP_S s, run $RUN_S s (work dir $WORK; rm -rf it when done)"
