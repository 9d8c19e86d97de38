#!/usr/bin/env bash
# Create .venv (if missing) and install srn-deblur with everything the demo, tests, sweeps
# and the web app need. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and exactly: the builds this project is tested with (never above 2.14.1 / 0.29.1).
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e ".[sweep,app,dev]"
# TensorFlow is test-only (tests/test_tf_exact.py checks the converted release models against it):
# its own venv, so its numpy/protobuf pins cannot move the framework's versions.
if [ ! -x .venv-tf/bin/python ]; then
    "$PYTHON" -m venv .venv-tf
fi
.venv-tf/bin/python -m pip install --quiet tensorflow-cpu==2.21.0
