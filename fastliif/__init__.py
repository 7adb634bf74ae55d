"""fastliif: fused kernels for LIIF arbitrary-scale super-resolution.

    import fastliif
    model = fastliif.nn.LIIF(encoder="edsr-baseline")   # official constructor and keys
    model = fastliif.load_checkpoint("edsr-baseline-liif.pth")
    sr = model(lr, coord, cell)
    fastliif.swap(existing_model)                        # fused query in place; unswap reverts
    fastliif.ops.liif_query(feat, coord, cell, weights, biases)

Around the kernels (imported on use): ``fastliif.data`` (datasets, resizing, degradations),
``fastliif.metrics``, ``fastliif.models`` (registry), ``fastliif.train``, ``fastliif.evaluate``,
``fastliif.upscale``, ``fastliif.pretrained`` (the bundled model); the ``fastliif`` command line
(demo, upscale, eval, train, bench, ...).

Importing never needs the compiled extension, Triton or a GPU: ``python -m fastliif.env``.
"""
from . import _ext, models, nn, ops, reference
from .checkpoint import load_checkpoint, save_checkpoint
from .swap import swap, unswap

__version__ = "0.1.0"
__all__ = ["ops", "nn", "reference", "models", "load_checkpoint", "save_checkpoint", "swap", "unswap",
           "__version__"]
