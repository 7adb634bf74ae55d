"""Backend names, availability and the `auto` choice for each op."""
import os

import torch

from .. import _ext

BACKENDS = ("torch", "cpu", "triton", "cuda")
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _cpu_status(op):
    if not _ext.HAS_EXT:
        return False, f"extension not built ({_ext.EXT_ERROR})"
    if not hasattr(torch.ops.fastliif, op):  # an extension built before this op existed
        return False, f"the built extension has no {op} kernel: rebuild (pip install --no-build-isolation -e .)"
    return True, "compiled extension fastliif._C loaded"


def availability(op="liif_query"):
    """{backend: (available, reason)} for ``op`` ("liif_query" or "dynamic_conv") on this machine."""
    return {
        "torch": (True, "pure PyTorch, always available"),
        "cpu": _cpu_status("liif_query_core" if op == "liif_query" else op),
        "triton": _triton_status(),
        "cuda": (False, "CUDA kernels are not implemented yet"),
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


def resolve(backend, device, dtype, op="liif_query"):
    """The backend that will run for tensors on ``device`` of ``dtype``."""
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    if device.type == "cpu" and backend in ("auto", "cpu") and dtype in (torch.float32, torch.float64):
        _ext.ensure()  # first use of the cpu backend: load or compile its kernels (see fastliif/_ext.py)
    avail = availability(op)
    if backend == "auto":
        if device.type == "cpu" and avail["cpu"][0] and dtype in (torch.float32, torch.float64):
            return "cpu"
        if device.type == "cuda" and avail["triton"][0] and dtype in TRITON_DTYPES:
            return "triton"
        return "torch"
    ok, reason = avail[backend]
    if not ok:
        raise RuntimeError(f"backend {backend!r} is not available: {reason}")
    if backend == "triton":
        if device.type != "cuda" and not (device.type == "cpu" and triton_interpreting()):
            raise ValueError(f"backend 'triton' needs CUDA tensors (CPU only under TRITON_INTERPRET=1), got {device}")
        if dtype not in TRITON_DTYPES:
            raise TypeError(f"backend 'triton' supports float32, bfloat16 and float16, got {dtype}")
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpu' needs CPU tensors, got {device}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"backend 'cpu' supports float32 and float64, got {dtype}; use backend='torch'")
    return backend
