#!/usr/bin/env bash
# The C++/CUDA backend on a GPU machine, in one command, most important first (issue 14):
#   1. build the extension with the .cu files; 2. nvcc_check (registers, spills, smem);
#   3. correctness: tests/test_cuda_backend.py (vs reference, vs Triton, precision bounds);
#   4. speed: the benchmark report (cuda rows next to triton); 5. compute-sanitizer memcheck
#   and racecheck on scripts/sanitize_cuda.py. Logs go to OUT_DIR (default benchmarks/results).
#   bash scripts/cuda_triage.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { echo "== $1"; }
step build
FASTLIIF_FORCE_CUDA=1 python3 setup.py build_ext --inplace >"$OUT/cuda_build.log" 2>&1 \
    || { tail -40 "$OUT/cuda_build.log"; exit 1; }
python3 -c "import torch, fastliif.ops as o; print(o.availability()['cuda'])" | tee "$OUT/cuda_available.log"
step nvcc_check
bash scripts/nvcc_check.sh 2>&1 | tee "$OUT/cuda_nvcc_check.log"
step tests
python3 -m pytest tests/test_cuda_backend.py tests/test_cuda_emulated.py tests/test_index_math.py -q -x -rs 2>&1 | tee "$OUT/cuda_pytest.log"
step speed
if [ -f benchmarks/gpu_report.py ]; then
    python3 benchmarks/gpu_report.py --out "$OUT" 2>&1 | tee "$OUT/cuda_gpu_report.log"
fi
step sanitizer
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        compute-sanitizer --tool "$tool" --error-exitcode 1 python3 scripts/sanitize_cuda.py 2>&1 \
            | tail -30 | tee "$OUT/cuda_sanitizer_$tool.log"
    done
else
    echo "compute-sanitizer not found: skipped" | tee "$OUT/cuda_sanitizer.log"
fi
