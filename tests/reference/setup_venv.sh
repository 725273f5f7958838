#!/usr/bin/env bash
# Creates the reference virtualenv (PyTorch + Captum) from requirements.txt, with pip only.
#
#     bash tests/reference/setup_venv.sh        # VENV=... to put it elsewhere, PYTHON=... for the interpreter
#
# Default location: $HOME/.cache/astrid-reference-venv. Running it again on an existing
# virtualenv installs whatever is missing or differs and leaves the rest.
set -euo pipefail
VENV="${VENV:-$HOME/.cache/astrid-reference-venv}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
"$VENV/bin/python" - <<'PY'
import captum, torch, transformers
print(f"torch {torch.__version__}, captum {captum.__version__}, transformers {transformers.__version__}")
PY
echo "reference virtualenv ready: $VENV (run the scripts with $VENV/bin/python)"
