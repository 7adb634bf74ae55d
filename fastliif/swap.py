"""Swap fused kernels into existing models, in place, and back.

A module is swapped when it has the official LIIF structure: an ``encoder`` module, an
``imnet`` whose ``layers`` is a Linear/ReLU stack (or ``imnet = None``), boolean
``feat_unfold``, ``local_ensemble`` and ``cell_decode`` and a ``query_rgb`` method. Its class
does not matter. The swap binds a fused ``query_rgb`` on the instance: parameters stay
the same objects (an existing optimizer keeps working) and state_dict keys do not change;
``unswap`` removes the binding.
"""
import types

import torch.nn as nn

from .nn.liif import LIIF as FusedLIIF
from .nn.liif import fused_query_rgb, mlp_linears

_MARK = "_fastliif_swapped"


def is_liif_like(module):
    if isinstance(module, FusedLIIF):
        return False  # already fused
    if not isinstance(getattr(module, "encoder", None), nn.Module):
        return False
    if not all(isinstance(getattr(module, f, None), bool) for f in ("feat_unfold", "local_ensemble", "cell_decode")):
        return False
    if not callable(getattr(module, "query_rgb", None)):
        return False
    imnet = getattr(module, "imnet", None)
    return imnet is None or mlp_linears(imnet) is not None


def _swapped_query_rgb(self, coord, cell=None):
    return fused_query_rgb(self, coord, cell, backend=self.__dict__[_MARK])


def swap(model, backend="auto"):
    """Replace the query of every LIIF-structured module in ``model`` with the fused op.

    Returns the names (as in ``named_modules``) of the modules swapped; ``""`` is the model.
    """
    swapped = []
    for name, module in model.named_modules():
        if _MARK in module.__dict__ or not is_liif_like(module):
            continue
        module.__dict__[_MARK] = backend
        module.__dict__["query_rgb"] = types.MethodType(_swapped_query_rgb, module)
        swapped.append(name)
    return swapped


def unswap(model):
    """Undo ``swap``; returns the names of the modules restored."""
    restored = []
    for name, module in model.named_modules():
        if _MARK in module.__dict__:
            del module.__dict__[_MARK]
            module.__dict__.pop("query_rgb", None)
            restored.append(name)
    return restored
