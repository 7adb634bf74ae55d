"""Backend names, availability and the `auto` choice for each op."""
import torch

from .. import _ext

BACKENDS = ("torch", "cpu", "triton", "cuda")


def availability():
    """{backend: (available, reason)} for the LIIF query op on this machine."""
    ext_reason = "compiled extension fastliif._C loaded" if _ext.HAS_EXT else f"extension not built ({_ext.EXT_ERROR})"
    return {
        "torch": (True, "pure PyTorch, always available"),
        "cpu": (_ext.HAS_EXT, ext_reason),
        "triton": (False, "Triton kernels are not implemented yet"),
        "cuda": (False, "CUDA kernels are not implemented yet"),
    }


def resolve(backend, device, dtype):
    """The backend that will run for tensors on ``device`` of ``dtype``."""
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    avail = availability()
    if backend == "auto":
        if device.type == "cpu" and avail["cpu"][0] and dtype in (torch.float32, torch.float64):
            return "cpu"
        return "torch"
    ok, reason = avail[backend]
    if not ok:
        raise RuntimeError(f"backend {backend!r} is not available: {reason}")
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpu' needs CPU tensors, got {device}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"backend 'cpu' supports float32 and float64, got {dtype}; use backend='torch'")
    return backend
