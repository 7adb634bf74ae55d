#!/usr/bin/env bash
# Fresh-machine setup, one line per step with the elapsed time. Installs only what is missing (a
# machine that has everything, such as a GPU machine's image, sets up with no network at all) and
# skips the C++ build when the installed extension is newer than everything it is built from.
#   PYTHON=...            interpreter to set up (default python3; a venv's python works)
#   FASTLIIF_TORCH=spec   torch to install, e.g. "torch==2.13.0" or "torch>=2.4" (default: keep an
#                         installed torch, else torch==2.13.0: see the README for which wheel that is)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
TORCH_PIN=${FASTLIIF_TORCH:-torch==2.13.0}
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
step() { printf '[setup %4ss] %s\n' "$SECONDS" "$*"; }

step "python $("$PY" -c 'import sys; print(sys.version.split()[0], "at", sys.executable)')"

# torch first and on its own: a torch already there (a GPU machine's CUDA build) is kept.
torch_version() { "$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true; }
TORCH_VERSION=$(torch_version)
if [ -n "${FASTLIIF_TORCH:-}" ] || [ -z "$TORCH_VERSION" ]; then
    step "installing $TORCH_PIN (large download)"
    "${PIP[@]}" "$TORCH_PIN"
    TORCH_VERSION=$(torch_version)
fi
step "torch $TORCH_VERSION"

# Everything else, checked by import name; only the missing ones are installed. Triton runs the
# kernels on GPUs and, through its interpreter, on CPU for the tests; a GPU torch brings its own.
MISSING=$("$PY" - <<'EOF'
import importlib.util, shutil
from importlib.metadata import PackageNotFoundError, version

need = {"setuptools": "setuptools>=64", "numpy": "numpy", "tqdm": "tqdm", "PIL": "pillow",
        "yaml": "pyyaml", "pybind11": "pybind11", "pytest": "pytest",
        "pytest_benchmark": "pytest-benchmark", "matplotlib": "matplotlib",
        "skimage": "scikit-image", "h5py": "h5py", "triton": "triton"}
missing = [pip for mod, pip in need.items() if importlib.util.find_spec(mod) is None]
try:  # editable installs need setuptools >= 64; before 70.1 its wheels need the wheel package
    v = tuple(int(x) for x in version("setuptools").split(".")[:2])
    if v < (64, 0) and "setuptools>=64" not in missing:
        missing.append("setuptools>=64")
    elif v < (70, 1) and importlib.util.find_spec("wheel") is None:
        missing.append("wheel")
except (PackageNotFoundError, ValueError):
    pass
if shutil.which("ninja") is None and importlib.util.find_spec("ninja") is None:
    missing.append("ninja")  # torch's extension builds need the ninja program
print(" ".join(missing))
EOF
)
if [ -n "$MISSING" ]; then
    step "installing: $MISSING"
    # shellcheck disable=SC2086  (one word per requirement)
    "${PIP[@]}" $MISSING
else
    step "all other requirements present: nothing to install"
fi

# The package with its C++ extension (CUDA kernels too where nvcc and a CUDA torch exist), in
# editable mode. Skipped when this checkout is already the installed fastliif and its compiled
# fastliif._C loads and is newer than csrc/, setup.py, pyproject.toml and fastliif/_build.py.
CHECK=$(cat <<'EOF'
import glob, importlib.util, os, sys
root = os.path.realpath(sys.argv[1])
spec = importlib.util.find_spec("fastliif")
pkg = os.path.dirname(os.path.realpath(spec.origin)) if spec and spec.origin else ""
libs = glob.glob(os.path.join(pkg, "_C*.so")) + glob.glob(os.path.join(pkg, "_C*.pyd"))
inputs = [os.path.join(root, f) for f in ("setup.py", "pyproject.toml", "fastliif/_build.py")]
inputs += [p for p in glob.glob(os.path.join(root, "csrc", "**", "*"), recursive=True) if os.path.isfile(p)]
if pkg == os.path.join(root, "fastliif") and libs and \
        min(map(os.path.getmtime, libs)) > max(map(os.path.getmtime, inputs)):
    from fastliif import _ext
    print("yes" if _ext.LOADED_FROM == "fastliif._C" else "")
EOF
)
# from / without PYTHONPATH: what is *installed*, not the checkout in the current folder
UP_TO_DATE=$(cd / && env -u PYTHONPATH "$PY" -c "$CHECK" "$ROOT" 2>/dev/null || true)
if [ "$UP_TO_DATE" = "yes" ]; then
    step "fastliif is installed from $ROOT and its extension is up to date: build skipped"
else
    LOG=$(mktemp "${TMPDIR:-/tmp}/fastliif-build.XXXXXX")
    step "building fastliif and its C++ extension (pip install --no-build-isolation -e ., about a minute; log $LOG)"
    if ! "${PIP[@]}" -v --no-build-isolation -e . >"$LOG" 2>&1; then
        tail -n 30 "$LOG"
        step "build failed: full log in $LOG"
        exit 1
    fi
    rm -f "$LOG"
    step "built"
fi
"$PY" -m fastliif.env
step "done"
