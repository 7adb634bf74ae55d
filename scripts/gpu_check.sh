#!/usr/bin/env bash
# Everything a GPU machine should run, in one command (issues 3, 4, 6): build the extension against
# the machine's CUDA torch, the full test suite (GPU tests included), compute-sanitizer on the
# Triton kernels, the benchmark reports (kernels, `fastliif bench`, training steps) and the demo
# into benchmarks/results/
#   bash scripts/gpu_check.sh [OUT_DIR]     (OUT_DIR gets logs; default benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
bash scripts/setup.sh 2>&1 | tee "$OUT/gpu_setup.log"
nvidia-smi | tee "$OUT/gpu_nvidia_smi.log" || true
python3 -m pytest tests -q -x -rs 2>&1 | tee "$OUT/gpu_pytest.log"
if command -v compute-sanitizer >/dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 1 python3 scripts/sanitize_liif.py 2>&1 \
        | tee "$OUT/gpu_sanitizer.log"
else
    echo "compute-sanitizer not found: skipped" | tee "$OUT/gpu_sanitizer.log"
fi
python3 benchmarks/gpu_report.py --out "$OUT" 2>&1 | tee "$OUT/gpu_report.log"
# The user-facing report and training throughput on this GPU (fused vs reference, side by side).
python3 -m fastliif bench --out "$OUT/gpu_bench" 2>&1 | tee "$OUT/gpu_bench.log"
python3 -m pytest benchmarks/bench_train.py --benchmark-only -c benchmarks/pytest.ini \
    --benchmark-json "$OUT/gpu_train_bench.json" 2>&1 | tee "$OUT/gpu_train_bench.log"
python3 -m fastliif demo --device cuda --out "$OUT/gpu_demo.png" 2>&1 | tee "$OUT/gpu_demo.log"
