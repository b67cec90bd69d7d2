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
# every pip call below keeps the pins rknn-toolkit2 / paddle2onnx need (a later install once pulled setuptools 84)
export PIP_CONSTRAINT="$PWD/constraints.txt"
python -m pip install -q --upgrade "pip<26"
python -m pip install -q -r requirements.txt
# torch: RF-DETR's framework (rfdetr), and rknn-toolkit2 imports it at start-up. 2.14.1 + torchvision 0.29.1
# are a matched pair (torchvision built for another torch fails: "operator torchvision::nms does not exist").
python -m pip install -q torch==2.14.1 torchvision==0.29.1
# RF-DETR through the official rfdetr package, held to constraints.txt like everything else
python -m pip install -q -r requirements-rfdetr.txt
python -m pip show rknn-toolkit2 >/dev/null 2>&1 || python -m pip install -q --no-deps rknn-toolkit2==2.5.0
if [ "${1:-}" = "--test" ]; then
  python -m pip install -q -r requirements-test.txt
  bash scripts/install_test_tools.sh
fi
python -c "import pkg_resources, numpy, google.protobuf" 2>/dev/null || {
  echo "setup: the installed stack lost a pin (setuptools<81, numpy 1.26.4, protobuf 4.25.4); see constraints.txt" >&2; exit 1; }
