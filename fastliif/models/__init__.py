"""Model registry by name, as the official LIIF `models.make(spec)`.

A spec is ``{'name': ..., 'args': {...}}`` (or just a name). Registered: ``edsr-baseline``,
``edsr``, ``rdn``, ``mlp`` (plain PyTorch modules shared by the reference and the fused models),
``liif`` (fused) / ``liif-reference`` (the oracle), ``udvd`` / ``udvd-reference``, and the
modules of this package (``a2n``, ``srcnn``, ``srresnet``, ``srgan-discriminator``).
"""
import sys

from .._registry import Registry, import_submodules


def _populate():
    # the oracle, the fused modules and every module of this package
    from .. import nn, reference  # noqa: F401
    import_submodules(sys.modules[__name__])


_models = Registry("model", _populate)
register, names, make, get, check = _models.register, _models.names, _models.make, _models.get, _models.check
