#!/usr/bin/env bash
# Set up a fresh machine for mmdet_detrdistill (README command 1).
#
# The OpenMMLab stack does not install cleanly by itself on today's PyTorch:
#   * mmdet 3.3.0 requires mmcv>=2.0.0rc4,<2.2.0, and mmcv 2.1.0 has no wheels for
#     torch 2.13, so it is built from the PyPI sdist with its ops (~7 min on 2 cores;
#     pip caches the wheel, so later runs take seconds);
#   * mmengine 0.10.7 needs pkg_resources at run time: setuptools<82.
# Set TORCH_SPEC to install another torch build (e.g. a CUDA one) first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --quiet --disable-pip-version-check"

echo "[1/4] torch and build tools"
$PIP "${TORCH_SPEC:-torch==2.13.0}" 'setuptools<82' ninja wheel
echo "[2/4] mmcv 2.1.0 with ops, built from source (slow the first time)"
MMCV_WITH_OPS=1 $PIP --no-build-isolation mmcv==2.1.0
echo "[3/4] mmengine, mmdet and tools"
$PIP mmengine==0.10.7 mmdet==3.3.0 pycocotools scipy matplotlib pytest ruff
echo "[4/4] mmdet_detrdistill (editable)"
$PIP --no-build-isolation --no-deps -e .
$PY -c "import mmcv.ops, mmdet, mmdet_detrdistill; print('ok: mmcv', mmcv.__version__, \
'mmdet', mmdet.__version__, 'mmdet_detrdistill', mmdet_detrdistill.__version__)"
