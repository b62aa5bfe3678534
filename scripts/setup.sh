#!/usr/bin/env bash
# Set up vadd for CPU use in ./.venv: the CPU build of torch, then the package and its test tools.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-cpu.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
.venv/bin/vadd --version >/dev/null
