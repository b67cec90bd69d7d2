#!/usr/bin/env bash
# Installs everything the tests need (Python stack, test tools, system tools) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
