#!/usr/bin/env bash
# The C++/CUDA backend on a GPU machine in one command (issue 14), after or instead of the plain
# Triton triage: the one thing scripts/gpu_triage.sh does not do is build, so this script
#   1. builds the extension with the .cu files (capped; FASTLIIF_FORCE_CUDA=1, in place),
#   2. runs scripts/nvcc_check.sh (registers, spills, shared memory per kernel),
#   3. runs the CUDA backend's own tests (vs the reference, vs Triton, precision bounds),
#   4. hands over to scripts/gpu_triage.sh, which covers the cuda backend whenever it is built:
#      correctness, speed through the engine, memcheck and racecheck (its sanitize_cuda phase).
#   bash scripts/cuda_triage.sh [DIR]        (DIR default: $OUT, else triage_out; BUDGET as there)
set -u
cd "$(dirname "$0")/.."
D=${1:-${OUT:-triage_out}}
mkdir -p "$D"
export PYTHONUNBUFFERED=1
echo "== build (CUDA)"
if ! FASTLIIF_FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} timeout -k 5 "${BUILD_CAP:-300}" \
        "${PYTHON:-python3}" setup.py build_ext --inplace > "$D/cuda_build.log" 2>&1; then
    tail -n 40 "$D/cuda_build.log"
    echo "CUDA build failed: the Triton triage runs alone"
fi
echo "== nvcc_check"
timeout -k 5 120 bash scripts/nvcc_check.sh > "$D/cuda_nvcc_check.log" 2>&1; tail -n 20 "$D/cuda_nvcc_check.log"
echo "== tests/test_cuda_backend.py"
timeout -k 5 "${TEST_CAP:-180}" "${PYTHON:-python3}" -m pytest tests/test_cuda_backend.py -q -x -rs \
    > "$D/cuda_pytest.log" 2>&1; tail -n 15 "$D/cuda_pytest.log"
BUDGET=${BUDGET:-300} bash scripts/gpu_triage.sh "$D"
