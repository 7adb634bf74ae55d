"""Backend names, availability and the `auto` choice for each op.

The ``auto`` rule (one place; ``fastliif env`` prints its outcome per op and device):

- ``FASTLIIF_BACKEND=<name>`` in the environment replaces ``auto`` everywhere; the named
  backend must then be available for the tensors, or the call fails saying why.
- CPU tensors: ``cpu`` (the compiled C++ kernels) for float32/float64 when the extension is
  built, else ``torch``.
- CUDA tensors: ``triton``, then ``cuda``, then ``torch``: the first that is available, takes
  the dtype and accepts the problem. Triton comes first only because no GPU has yet measured
  the C++/CUDA backend against it; put ``cuda`` first (CUDA_FIRST) once a GPU run shows it
  faster. A fused kernel that rejects the problem (liif_query: a decoder whose hidden layers
  are not one power-of-two width >= 16, no hidden layer, out_dim > 16; a gradient under
  ``torch.use_deterministic_algorithms(True)``) passes it on to the next backend; the
  reason is returned by ``choose`` and shown by ``fastliif env``.
- Any other device: ``torch``.
"""
import os

import torch

from .. import _ext

BACKENDS = ("torch", "cpu", "triton", "cuda")
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CUDA_DTYPES = TRITON_DTYPES
CPU_DTYPES = (torch.float32, torch.float64)
CUDA_FIRST = False  # flip when a GPU has measured the CUDA backend faster than Triton
ENV_VAR = "FASTLIIF_BACKEND"
_CORE_OP = {"liif_query": "liif_query_core", "dynamic_conv": "dynamic_conv"}


def _cpu_status(op):
    if not _ext.HAS_EXT:
        return False, f"extension not built ({_ext.EXT_ERROR})"
    if not hasattr(torch.ops.fastliif, op):  # an extension built before this op existed
        return False, f"the built extension has no {op} kernel: rebuild (pip install --no-build-isolation -e .)"
    return True, _ext.describe()


def _has_cuda_kernel(op):
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"fastliif::{op}", "CUDA")
    except RuntimeError:  # the op itself is not in this build of the extension
        return False


# torch.compile cannot trace the dispatcher query, and its answer is fixed per process: mark it
# constant the way torch.compiler.assume_constant_result does, without calling that decorator,
# which imports torch._dynamo (and with it Triton, ~2 s) at `import fastliif`.
_has_cuda_kernel._dynamo_marked_constant = True


def _cuda_status(op):
    """The C++/CUDA kernels are there when the extension registered a CUDA kernel for the op."""
    if not _ext.HAS_EXT:
        return False, f"extension not built ({_ext.EXT_ERROR})"
    if not _has_cuda_kernel(op):
        return False, "the extension was built without CUDA kernels (needs a CUDA torch and nvcc at build time)"
    if not torch.cuda.is_available():
        return False, "CUDA kernels built, but no CUDA device"
    return True, "C++/CUDA kernels in fastliif._C"


def availability(op="liif_query"):
    """{backend: (available, reason)} for ``op`` ("liif_query" or "dynamic_conv") on this machine."""
    core = _CORE_OP[op]
    return {
        "torch": (True, "pure PyTorch, always available"),
        "cpu": _cpu_status(core),
        "triton": _triton_status(),
        "cuda": _cuda_status(core),
    }


def triton_interpreting():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_status():
    if not _ext.has_triton():
        return False, "triton is not installed"
    if triton_interpreting():
        return True, "Triton interpreter (TRITON_INTERPRET=1): CPU tensors, fp32, for testing"
    if torch.cuda.is_available():
        return True, "Triton kernels for CUDA tensors"
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU for testing)"


def _misfit(backend, device, dtype):
    """Why ``backend`` cannot take tensors on ``device`` of ``dtype`` (None when it can), and the
    exception type to raise when it was asked for by name."""
    if backend == "triton":
        if device.type != "cuda" and not (device.type == "cpu" and triton_interpreting()):
            return ValueError, f"backend 'triton' needs CUDA tensors (CPU only under TRITON_INTERPRET=1), got {device}"
        if dtype not in TRITON_DTYPES:
            return TypeError, f"backend 'triton' supports float32, bfloat16 and float16, got {dtype}"
    if backend == "cuda":
        if device.type != "cuda":
            return ValueError, f"backend 'cuda' needs CUDA tensors, got {device}"
        if dtype not in CUDA_DTYPES:
            return TypeError, f"backend 'cuda' supports float32, bfloat16 and float16, got {dtype}"
    if backend == "cpu":
        if device.type != "cpu":
            return ValueError, f"backend 'cpu' needs CPU tensors, got {device}"
        if dtype not in CPU_DTYPES:
            return TypeError, f"backend 'cpu' supports float32 and float64, got {dtype}; use backend='torch'"
    return None


def _candidates(device):
    if device.type == "cpu":
        return ["cpu", "torch"]
    if device.type == "cuda":
        return ["cuda", "triton", "torch"] if CUDA_FIRST else ["triton", "cuda", "torch"]
    return ["torch"]


def env_backend():
    """The backend named by FASTLIIF_BACKEND ("auto" when unset or empty)."""
    name = os.environ.get(ENV_VAR, "").strip() or "auto"
    if name not in BACKENDS + ("auto",):
        raise ValueError(f"{ENV_VAR} must be one of {('auto',) + BACKENDS}, got {name!r}")
    return name


def choose(backend, device, dtype, op="liif_query", rejects=None):
    """(name, reason): the backend that will run for tensors on ``device`` of ``dtype``.

    ``rejects(name)`` returns why that fused backend cannot run this particular problem (or
    None); ``auto`` then moves on to the next candidate (see the module docstring), while a
    backend asked for by name is left to raise its own error. A named backend that is not
    available, or cannot take the device or dtype, raises here.
    """
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    forced = backend == "auto" and env_backend() != "auto"
    if forced:
        backend = env_backend()
    if device.type == "cpu" and backend in ("auto", "cpu") and dtype in CPU_DTYPES:
        _ext.ensure()  # first use of the cpu backend: load or compile its kernels (see fastliif/_ext.py)
    avail = availability(op)
    if backend != "auto":
        ok, reason = avail[backend]
        via = f" (from {ENV_VAR})" if forced else ""
        if not ok:
            raise RuntimeError(f"backend {backend!r}{via} is not available: {reason}")
        misfit = _misfit(backend, device, dtype)
        if misfit:
            raise misfit[0](misfit[1] + via)
        return backend, f"set by {ENV_VAR}" if forced else "asked for by name"
    skipped = []
    for name in _candidates(device):
        if name == "torch":
            break
        ok, reason = avail[name]
        misfit = None if not ok else _misfit(name, device, dtype)
        refusal = None if not ok or misfit else (rejects(name) if rejects else None)
        if ok and not misfit and not refusal:
            return name, "; ".join(skipped) or "first choice"
        skipped.append(f"{name}: {reason if not ok else misfit[1] if misfit else refusal}")
    return "torch", "; ".join(skipped) or "the only backend for this device"


def resolve(backend, device, dtype, op="liif_query", rejects=None):
    """The backend name that will run (see ``choose``)."""
    return choose(backend, device, dtype, op, rejects)[0]
