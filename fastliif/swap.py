"""Swap fused kernels into existing models, in place, and back.

Two kinds of module are swapped; their class does not matter, only their structure:

* LIIF: an ``encoder`` module, an ``imnet`` whose ``layers`` is a Linear/ReLU stack (or
  ``imnet = None``), boolean ``feat_unfold``, ``local_ensemble`` and ``cell_decode`` and a
  ``query_rgb`` method. The swap binds a fused ``query_rgb`` on the instance.
* UDVD's PixelConv: a module without parameters, buffers or children, with an integer
  ``scale`` (>= 1), a boolean ``depthwise`` and a ``forward(feature, kernel)``. The swap binds
  a fused ``forward`` (``fastliif.ops.dynamic_conv``) on the instance.

Parameters stay the same objects (an existing optimizer keeps working) and state_dict keys do
not change; ``unswap`` removes the binding.
"""
import inspect
import types
import warnings

import torch.nn as nn

from .nn.liif import LIIF as FusedLIIF
from .nn.liif import check_options, fused_query_rgb, mlp_linears
from .nn.udvd import PixelConv as FusedPixelConv
from .nn.udvd import fused_pixel_conv

_MARK = "_fastliif_swapped"  # the backend of a swapped module
_BOUND = "_fastliif_bound"  # the attribute bound on a swapped PixelConv ("forward"); absent for LIIF


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


def is_pixel_conv_like(module):
    if not isinstance(module, nn.Module) or isinstance(module, FusedPixelConv):
        return False  # already fused
    scale = getattr(module, "scale", None)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        return False
    if not isinstance(getattr(module, "depthwise", None), bool):
        return False
    if module._parameters or module._buffers or module._modules:
        return False  # the fused forward would ignore them
    try:
        inspect.signature(module.forward).bind(None, None)  # forward(feature, kernel)
    except (TypeError, ValueError):
        return False
    return True


def _swapped_query_rgb(self, coord, cell=None):
    return fused_query_rgb(self, coord, cell, backend=self.__dict__[_MARK])


def _swapped_pixel_conv_forward(self, feature, kernel):
    return fused_pixel_conv(feature, kernel, self.scale, self.depthwise, backend=self.__dict__[_MARK])


def swap(model, backend="auto"):
    """Replace the query of every LIIF-structured module and the forward of every
    PixelConv-structured module in ``model`` with the fused ops.

    Returns the names (as in ``named_modules``) of the modules swapped; ``""`` is the model.
    Warns when nothing was swapped and nothing in the model was fused already.
    """
    check_options("swap", backend)
    swapped, fused = [], False
    for name, module in model.named_modules():
        if _MARK in module.__dict__ or isinstance(module, (FusedLIIF, FusedPixelConv)):
            fused = True
            continue
        if is_liif_like(module):
            module.__dict__[_MARK] = backend
            module.__dict__["query_rgb"] = types.MethodType(_swapped_query_rgb, module)
        elif is_pixel_conv_like(module) and "forward" not in module.__dict__:
            module.__dict__[_MARK] = backend
            module.__dict__[_BOUND] = "forward"
            module.__dict__["forward"] = types.MethodType(_swapped_pixel_conv_forward, module)
        else:
            continue
        swapped.append(name)
    if not swapped and not fused:
        warnings.warn(f"fastliif.swap: nothing swapped in this {type(model).__name__}: it has no LIIF-structured "
                      "module (an encoder, imnet = Linear/ReLU stack or None, boolean feat_unfold / local_ensemble "
                      "/ cell_decode, a query_rgb method) and no PixelConv-structured one (integer scale, boolean "
                      "depthwise, no parameters, forward(feature, kernel))", stacklevel=2)
    return swapped


def unswap(model):
    """Undo ``swap``; returns the names of the modules restored."""
    restored = []
    for name, module in model.named_modules():
        if _MARK in module.__dict__:
            del module.__dict__[_MARK]
            module.__dict__.pop(module.__dict__.pop(_BOUND, "query_rgb"), None)
            restored.append(name)
    return restored
