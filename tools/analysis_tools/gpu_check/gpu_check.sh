#!/usr/bin/env bash
# One prepared check of every family and method on one GPU, in a time budget (issue 24).
#
#   bash tools/analysis_tools/gpu_check/gpu_check.sh OUT_DIR [--wheels DIR] [--budget SECONDS]
#        [--skip-build] [--device cuda|cpu] [gpu_check.py options: --configs real|tiny,
#        --size 800, --batch 2, --iters 10, --families ..., --parts bench,amp,resume, --box-* ...]
#
# On a GPU machine without network (Python 3.12, torch 2.11+cu130, nvcc 13, 16 cores), first
# builds what it lacks from files brought along in --wheels (default work_dirs/gpu_wheels, filled
# by gpu_check_fetch.sh on a machine with PyPI): the wheels of mmengine, mmdet, pycocotools and
# their small needs, mmcv 2.1.0 built from its sdist with CUDA ops for sm_90 (falling back to a
# CPU-ops build if that fails, so that the families without CUDA ops still run), and this package
# (editable). Then runs gpu_check.py: per family (Conditional, DAB, Deformable, DINO) the real R50
# student configs at 800 px, batch 2: student step, teacher forward and distill step of each
# method with step and peak-memory ratios and matching share; one AMP step (fp16, bf16) of each
# distiller; an exact-resume check. Every step is time-boxed inside --budget (default 480 s from
# the start of this script), and a failure is a row of the tables, not the end of the run.
# Output: OUT_DIR/gpu_check.md (the tables), results.json, build.log, units.log.
#
# CPU rehearsal (tests/tools/test_gpu_check.py runs it; ~2 min on one core):
#   bash tools/analysis_tools/gpu_check/gpu_check.sh OUT --skip-build --device cpu \
#        --configs tiny --size 128 --batch 1 --iters 1 --warmup 0 --probe-steps 1 --amp-steps 1 \
#        --worker-per part
set -uo pipefail
cd "$(dirname "$0")/../../.."
START=$(date +%s)
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { echo "usage: $0 OUT_DIR [options]" >&2; exit 2; }
OUT=$1
shift
WHEELS=work_dirs/gpu_wheels BUDGET=480 SKIP_BUILD=0 DEVICE=cuda PASS=()
while [ $# -gt 0 ]; do
    case $1 in
        --wheels) WHEELS=$2; shift 2 ;;
        --budget) BUDGET=$2; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --device) DEVICE=$2; shift 2 ;;
        *) PASS+=("$1"); shift ;;
    esac
done
PY=${PYTHON:-python3}
PIP=("$PY" -m pip install --disable-pip-version-check --no-input)
mkdir -p "$OUT"
STATUS=$OUT/build_status.tsv
LOG=$OUT/build.log
: >"$STATUS"
: >"$LOG"

left() { echo $((START + BUDGET - $(date +%s))); }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//|//}" >>"$STATUS"; }
# step NAME BOX CMD...: run CMD for at most BOX seconds, log it, record the outcome
step() {
    local name=$1 box=$2 t0 rc
    shift 2
    if [ "$box" -lt 10 ]; then record "$name" 'skipped: no time left' 0 ''; return 1; fi
    local n0
    n0=$(wc -l <"$LOG")
    echo "===== $name (box ${box} s): $*" >>"$LOG"
    t0=$(date +%s)
    timeout -k 5 "$box" "$@" >>"$LOG" 2>&1
    rc=$?
    local took=$(($(date +%s) - t0)) last
    last=$(tail -n +$((n0 + 1)) "$LOG" | grep -iE 'error|fatal' | tail -1 | cut -c1-200)
    if [ $rc -eq 0 ]; then record "$name" ok "$took" ''
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then record "$name" "timeout (box ${box} s)" "$took" "$last"
    else record "$name" "failed (exit $rc)" "$took" "$last"; fi
    return $rc
}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
has_mmcv_ops() {  # mmcv with ops (with CUDA ops when $1 is cuda) already importable
    "$PY" - "$1" >/dev/null 2>&1 <<'EOF'
import sys
from mmcv.ops import get_compiling_cuda_version
assert sys.argv[1] != 'cuda' or get_compiling_cuda_version() != 'not available'
EOF
}

if [ "$SKIP_BUILD" = 1 ]; then
    record build 'skipped (--skip-build)' 0 ''
else
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
    record 'GPU (nvidia-smi)' info 0 "$gpu"
    torch_info=$("$PY" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1)
    record 'python, torch, CUDA, GPU seen' info 0 "$torch_info"
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    record nvcc info 0 "$(nvcc --version 2>&1 | grep -i release | head -1)"
    # mmengine 0.10.7 and mmcv's setup.py import pkg_resources (gone from setuptools 82)
    if ! "$PY" -c 'import pkg_resources' 2>/dev/null; then
        step 'setuptools<82 (pkg_resources)' "$(min 60 "$(left)")" \
            "${PIP[@]}" --no-index --no-deps "$WHEELS"/setuptools-*.whl
    fi
    wheels=$(ls "$WHEELS"/*.whl 2>/dev/null | grep -v '/setuptools-')
    # shellcheck disable=SC2086
    step 'wheels: mmengine, mmdet, pycocotools, ...' "$(min 120 "$(left)")" \
        "${PIP[@]}" --no-index --no-deps $wheels
    if has_mmcv_ops "$DEVICE"; then
        record 'mmcv 2.1.0' 'skipped (already built)' 0 ''
    elif [ "$DEVICE" = cpu ]; then
        step 'mmcv 2.1.0 (CPU ops)' "$(min 900 "$(($(left) - 60))")" env MMCV_WITH_OPS=1 \
            "${PIP[@]}" -v --no-build-isolation --no-index --no-deps --find-links "$WHEELS" mmcv==2.1.0
    else
        # mmcv 2.1.0's CUDA sources include THC/THCAtomics.cuh, a shim that newer torch builds
        # may no longer ship: if so, bring one (ATen's Atomic.cuh) through MMCV_CUDA_ARGS
        shim=$(pwd)/work_dirs/gpu_check_shim
        if ! "$PY" -c 'import os, sys, torch.utils.cpp_extension as e; sys.exit(not any(
                os.path.exists(os.path.join(d, "THC", "THCAtomics.cuh")) for d in e.include_paths()))' \
                2>/dev/null; then
            mkdir -p "$shim/THC"
            printf '#pragma once\n#include <ATen/cuda/Atomic.cuh>\n' >"$shim/THC/THCAtomics.cuh"
            export MMCV_CUDA_ARGS="-I$shim"
            record 'THC/THCAtomics.cuh shim' info 0 "torch has none: -I$shim"
        fi
        # all of mmcv's CUDA ops for sm_90 only; leave ~2.5 min for the checks
        step 'mmcv 2.1.0 (CUDA ops, sm_90)' "$(min 330 "$(($(left) - 150))")" \
            env MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 \
            "${PIP[@]}" -v --no-build-isolation --no-index --no-deps --find-links "$WHEELS" mmcv==2.1.0 ||
            step 'mmcv 2.1.0 (fallback: CPU ops only; no Deformable on CUDA)' \
                "$(min 150 "$(($(left) - 120))")" \
                env MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= MAX_JOBS=16 \
                "${PIP[@]}" -v --no-build-isolation --no-index --no-deps --find-links "$WHEELS" mmcv==2.1.0
    fi
    step 'mmdet_detrdistill (editable)' "$(min 60 "$(left)")" \
        "${PIP[@]}" --no-index --no-deps --no-build-isolation -e .
    step 'import mmcv.ops, mmdet, mmdet_detrdistill' "$(min 60 "$(left)")" \
        "$PY" -c 'import mmcv.ops, mmdet, mmdet_detrdistill'
fi

if [ "$DEVICE" = cuda ]; then  # Hungarian solvers at 900 queries, CPU vs CUDA (issue 22, item 4)
    step 'benchmark_matching (cuda)' "$(min 120 "$(($(left) - 240))")" \
        "$PY" tools/analysis_tools/benchmark_matching.py --device cuda --sizes 900 \
        --repeats 2 --out "$OUT/matching.md"
fi

# the checks, until 10 s before the budget ends (the tables are written after)
HERE=tools/analysis_tools/gpu_check
"$PY" $HERE/gpu_check.py --out "$OUT" --device "$DEVICE" \
    --deadline $((START + BUDGET - 10)) --build-status "$STATUS" \
    --command "bash $HERE/gpu_check.sh $OUT --device $DEVICE ${PASS[*]:-}" \
    "${PASS[@]}"
rc=$?
echo "gpu_check.sh: $(($(date +%s) - START)) s in all" | tee -a "$LOG"
exit $rc
