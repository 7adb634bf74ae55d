import os

import torch

# Without a GPU the Triton kernels run through Triton's interpreter on CPU tensors. The
# variable must be set before any kernel module is imported (triton.jit reads it then).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
