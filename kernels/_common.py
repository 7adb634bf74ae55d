"""Host-side helpers shared by the Triton launchers."""
import contextlib
import os

import torch


def interpreting():
    """Triton's interpreter (TRITON_INTERPRET=1) runs the kernels with numpy on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def device_guard(device):
    """Launch on the tensors' GPU, not the current one (cuda:1 tensors from a cuda:0 thread)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
