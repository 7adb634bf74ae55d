#!/usr/bin/env bash
# Compile every CUDA kernel file (csrc/cuda/*.cu) for sm_80 and sm_90a with plain nvcc (no GPU,
# no CUDA torch needed), fail on any error or warning, and print registers, stack, spills and
# shared memory per kernel. With torch's headers at hand it also syntax-checks the CUDA glue
# (csrc/cuda/*_cuda.cpp) with -DWITH_CUDA, which an ordinary CPU build never compiles.
#   bash scripts/nvcc_check.sh   (NVCC=/path/to/nvcc: the compiler; NVCC_CHECK_FILES="a.cu b.cu": a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || { echo "nvcc_check: nvcc not found (set NVCC=...)" >&2; exit 3; }
# the toolkit's headers, for the glue check (nvcc may be a wrapper outside the toolkit)
CUDA_INC=""
for d in "${CUDA_HOME:-}" "$(dirname "$(dirname "$(readlink -f "$NVCC")")")" /usr/local/cuda /usr/local/cuda-*; do
    if [ -n "$d" ] && [ -f "$d/include/cuda_runtime_api.h" ]; then CUDA_INC="$d/include"; break; fi
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
status=0
# sm_90a needs the -gencode form (the -arch=sm_90a shorthand also runs a plain sm_90 pass)
for gencode in "arch=compute_80,code=sm_80" "arch=compute_90a,code=sm_90a"; do
    sm=${gencode##*=}
    for cu in ${NVCC_CHECK_FILES:-csrc/cuda/*.cu}; do
        log="$OUT/$(basename "$cu" .cu).$sm.log"
        if ! "$NVCC" -c -std=c++17 -O3 -gencode="$gencode" -Xptxas -v -Werror all-warnings \
                "$cu" -o "$OUT/$(basename "$cu" .cu).$sm.o" >"$log" 2>&1; then
            echo "FAIL $cu ($sm)"; cat "$log"; status=1; continue
        fi
        if grep -qiE "warning|error" "$log"; then
            echo "FAIL $cu ($sm): warnings"; grep -iE "warning|error" "$log"; status=1; continue
        fi
        echo "ok   $cu ($sm)"
        # one line per kernel: name, registers, stack frame, spills, shared memory (static)
        awk -v sm="$sm" '
            /Compiling entry function/ { match($0, /_Z[^'"'"']*/); name = substr($0, RSTART, RLENGTH); smem = 0 }
            /bytes stack frame/ { stack = $1; spill_st = $5; spill_ld = $9 }
            /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
                if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
                cmd = "c++filt -p \"" name "\""; cmd | getline pretty; close(cmd)
                sub(/^fastliif::cuda::\(anonymous namespace\)::/, "", pretty)
                printf "       %-6s %-34s regs %3d  stack %4d B  spills %d/%d B  static smem %d B\n", sm, pretty, regs, stack, spill_st, spill_ld, smem }
        ' "$log"
    done
done
# The glue: needs torch's headers (a CPU wheel has them, except one CMake-generated CUDA
# header, stubbed here) and the toolkit's cuda_runtime_api.h.
if [ -z "$CUDA_INC" ]; then
    echo "skip csrc/cuda/*_cuda.cpp: no cuda_runtime_api.h found (set CUDA_HOME)"
elif TORCH_INC=$(python3 -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'include'))" 2>/dev/null) \
        && [ -d "$TORCH_INC" ]; then
    mkdir -p "$OUT/stub/c10/cuda/impl"
    [ -f "$TORCH_INC/c10/cuda/impl/cuda_cmake_macros.h" ] || : > "$OUT/stub/c10/cuda/impl/cuda_cmake_macros.h"
    for cpp in csrc/cuda/*_cuda.cpp; do
        if c++ -fsyntax-only -std=c++17 -Wall -Wextra -Werror -DWITH_CUDA -I"$OUT/stub" -isystem "$TORCH_INC" \
                -isystem "$TORCH_INC/torch/csrc/api/include" -isystem "$CUDA_INC" "$cpp" >"$OUT/glue.log" 2>&1; then
            echo "ok   $cpp (syntax, -DWITH_CUDA)"
        else
            echo "FAIL $cpp"; cat "$OUT/glue.log"; status=1
        fi
    done
else
    echo "skip csrc/cuda/*_cuda.cpp: torch is not importable here"
fi
exit $status
