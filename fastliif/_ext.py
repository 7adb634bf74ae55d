"""Optional compiled and GPU pieces, probed once; importing this never fails."""
import importlib.util

import torch  # noqa: F401  (loads libtorch before the extension)

try:
    from . import _C  # noqa: F401  (registers torch.ops.fastliif.* kernels)
    HAS_EXT = True
    EXT_ERROR = None
except ImportError as exc:  # not built, or built against another torch
    HAS_EXT = False
    EXT_ERROR = f"{type(exc).__name__}: {exc}"


def has_triton():
    """True when the triton package can be imported (without importing it here)."""
    return importlib.util.find_spec("triton") is not None
