#!/usr/bin/env bash
# Installs the toolbox's Python stack into ./.venv (idempotent).
#   bash scripts/setup.sh          the toolbox itself
#   bash scripts/setup.sh --test   also the test tools and the system tools the tests use
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade "pip<26"
python -m pip install -q -r requirements.txt
# rknn-toolkit2 imports torch at start-up; torch==2.13.0 resolves to a CPU build here.
python -m pip show torch >/dev/null 2>&1 || python -m pip install -q torch==2.13.0
python -m pip show rknn-toolkit2 >/dev/null 2>&1 || python -m pip install -q --no-deps rknn-toolkit2==2.5.0
if [ "${1:-}" = "--test" ]; then
  python -m pip install -q -r requirements-test.txt
  bash scripts/install_test_tools.sh
fi
