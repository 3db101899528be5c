#!/usr/bin/env bash
# Fetch, on a machine with PyPI access, what tools/analysis_tools/gpu_check/gpu_check.sh installs
# on a GPU machine without network: wheels for CPython 3.12 on x86-64 Linux, and mmcv's sdist.
#
#   bash tools/analysis_tools/gpu_check/gpu_check_fetch.sh [WHEEL_DIR]
#   (default WHEEL_DIR: work_dirs/gpu_wheels)
#
# The GPU machine (see the device notes: Python 3.12, torch 2.11+cu130, numpy, scipy, opencv
# headless, matplotlib, rich, tqdm, six, pyyaml, pillow, ninja already there) lacks the
# OpenMMLab stack and a few small pure-Python needs. Each is fetched without its dependencies
# (--no-deps), so the list below is complete on its own; gpu_check.sh installs it the same way.
# setuptools<82: mmengine 0.10.7 imports pkg_resources, which setuptools 82 removed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DIR=${1:-work_dirs/gpu_wheels}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
PLATFORMS=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    PLATFORMS+=(--platform "${p}_x86_64")
done
WHEELS=(
    mmengine==0.10.7 mmdet==3.3.0 pycocotools shapely terminaltables  # mmdet's needs
    addict termcolor yapf platformdirs  # mmengine's and mmcv's (yapf: platformdirs)
    'setuptools<82'
    lapx torch-linear-assignment  # batched Hungarian solvers (benchmark_matching.py)
)
$PY -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d "$DIR" "${WHEELS[@]}"
# mmcv 2.1.0 has no wheel for torch 2.11: gpu_check.sh builds it there with CUDA ops
$PY -m pip download --quiet --no-deps --no-binary=:all: -d "$DIR" mmcv==2.1.0
ls -l "$DIR"
du -sh "$DIR"
