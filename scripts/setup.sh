#!/usr/bin/env bash
# Fresh-machine setup: pinned CPU torch (a bare `torch` would pull GBs of CUDA wheels),
# build tools, test tools, then the package with its C++ extension (CUDA too when present).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_PIN=${FASTLIIF_TORCH:-torch==2.13.0}
# Keep a torch that is already there (a GPU machine's CUDA build); otherwise the pinned CPU wheel.
if [ -n "${FASTLIIF_TORCH:-}" ] || ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_PIN"
fi
"$PY" -m pip install --quiet --disable-pip-version-check \
    "setuptools>=64" wheel ninja pybind11 numpy tqdm pillow pyyaml pytest pytest-benchmark matplotlib \
    scikit-image h5py
# Triton: kernels on GPUs, and on CPU through its interpreter for the tests. A GPU machine's
# torch already brings a matching Triton: leave that one alone.
"$PY" -c "import triton" 2>/dev/null || "$PY" -m pip install --quiet --disable-pip-version-check triton
"$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .
"$PY" -m fastliif.env
