#!/usr/bin/env bash
# Creates .venv with the exact pinned environment. Idempotent: skips work when the lock files
# have not changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.installed"
want=$(cat requirements.lock requirements-dev.lock pyproject.toml setup.py mgqe_dist/*/_*.c | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first and pinned: an unpinned torch requirement would pull a multi-GB CUDA build.
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install --no-deps -r requirements.lock -r requirements-dev.lock
"${pip[@]}" install --no-deps -e .
echo "$want" > "$stamp"
