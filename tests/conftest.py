import os

import pytest
import torch

# Without a GPU the Triton kernels run through Triton's interpreter on CPU tensors. The
# variable must be set before any kernel module is imported (triton.jit reads it then).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def triton_dev():
    """The device the triton backend takes here (CUDA on a GPU, CPU under TRITON_INTERPRET=1);
    skips, saying why, where neither is possible."""
    from liif_helpers import triton_device
    device, why = triton_device()
    if device is None:
        pytest.skip(why)
    return device
