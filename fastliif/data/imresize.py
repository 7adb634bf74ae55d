"""Bicubic resize that matches MATLAB ``imresize`` (the protocol SR papers use to make LR images).

MATLAB's rules, reproduced here:

- Keys cubic kernel with a = -0.5 (``cubic`` below), support [-2, 2].
- Output pixel ``x`` (1-based) samples input position ``u = x/scale + 0.5*(1 - 1/scale)``.
- Downscaling with antialiasing widens the kernel: ``h(t) = scale * cubic(scale * t)`` with support
  ``4/scale``; the weights of each output pixel are normalised to sum to one.
- Taps outside the image are mirrored with the edge pixel repeated (``[1..n, n..1]``, period 2n).
- Given a scale, the output size is ``ceil(in * scale)``; given a size, each dimension uses
  ``scale = out / in``.
- The dimension with the smaller scale is resized first (ties: height first).

Each 1-D resize is a dense ``(out, in)`` weight matrix, so a whole batch is two matmuls. The
matrices are built in float64 on the CPU (cached) and cast to the input's dtype and device.
"""
import functools
import math
import numbers

import torch

__all__ = ["imresize", "cubic", "weight_matrix", "resize_weights", "output_size"]


def cubic(t):
    """Keys cubic convolution kernel, a = -0.5 (MATLAB's ``cubic``)."""
    at = t.abs()
    at2 = at * at
    at3 = at2 * at
    inner = (1.5 * at3 - 2.5 * at2 + 1.0) * (at <= 1)
    outer = (-0.5 * at3 + 2.5 * at2 - 4.0 * at + 2.0) * ((at > 1) & (at <= 2))
    return inner + outer


def _weight_matrix_cpu64(in_len, out_len, scale, antialias):
    # Training patches reuse a few small matrices: cache those. Whole-image matrices (MBs each,
    # one per image size) are cheap to rebuild next to the matmul that uses them.
    if in_len * out_len <= _CACHE_MAX_ELEMENTS:
        return _cached_matrix(in_len, out_len, scale, antialias)
    return _build_matrix(in_len, out_len, scale, antialias)


_CACHE_MAX_ELEMENTS = 1 << 18


def _build_matrix(in_len, out_len, scale, antialias):
    width = 4.0
    if scale < 1 and antialias:
        width = width / scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]   # 1-based positions
    dist = u[:, None] - idx
    if scale < 1 and antialias:
        w = scale * cubic(scale * dist)
    else:
        w = cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # Symmetric padding with the edge repeated: position p maps through [1..n, n..1] (period 2n).
    period = 2 * in_len
    m = torch.remainder(idx.long() - 1, period)
    src = torch.where(m < in_len, m, period - 1 - m)                       # 0-based source index
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, src, w)
    return mat


_cached_matrix = functools.lru_cache(maxsize=128)(_build_matrix)


def _check_len(n, what):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return int(n)


def _check_scale(s):
    if isinstance(s, bool) or not isinstance(s, numbers.Real):
        raise ValueError(f"scale must be a positive finite number, got {s!r}")
    s = float(s)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"scale must be a positive finite number, got {s!r}")
    return s


def weight_matrix(in_len, out_len=None, scale=None, antialias=True, dtype=torch.float64, device=None):
    """The ``(out_len, in_len)`` matrix of one 1-D MATLAB bicubic resize: ``y = W @ x``.

    Give ``out_len`` (then ``scale = out_len / in_len`` unless ``scale`` is also given, as MATLAB
    does when both are known), or ``scale`` alone (then ``out_len = ceil(in_len * scale)``).
    """
    in_len = _check_len(in_len, "input length")
    if out_len is None and scale is None:
        raise ValueError("give out_len or scale")
    if scale is not None:
        scale = _check_scale(scale)
    if out_len is None:
        out_len = _ceil_size(in_len, scale)
    out_len = _check_len(out_len, "output length")
    if scale is None:
        scale = out_len / in_len
    mat = _weight_matrix_cpu64(in_len, out_len, scale, bool(antialias))
    return mat.to(dtype=dtype, device=device, copy=True)   # never hand out the cached tensor


def _ceil_size(n, scale):
    # ceil(n * scale) as MATLAB, except that a product within float round-off of an integer is
    # taken as that integer (e.g. 10 * 1.1 = 11.000000000000002 gives 11, not 12).
    prod = n * scale
    near = round(prod)
    if abs(prod - near) <= 1e-9 * max(1.0, abs(prod)):
        return max(int(near), 1)
    return max(int(math.ceil(prod)), 1)


def _pair(v, what):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what} must be a number or a pair (h, w), got {v!r}")
        return tuple(v)
    return (v, v)


def output_size(in_size, scale=None, size=None):
    """``((out_h, out_w), (scale_h, scale_w))`` for an input of ``in_size = (h, w)``."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    h, w = (_check_len(n, "input size") for n in in_size)
    if scale is not None:
        sh, sw = (_check_scale(s) for s in _pair(scale, "scale"))
        return (_ceil_size(h, sh), _ceil_size(w, sw)), (sh, sw)
    oh, ow = (_check_len(n, "size") for n in _pair(size, "size"))
    return (oh, ow), (oh / h, ow / w)


def resize_weights(in_size, scale=None, size=None, antialias=True, dtype=torch.float64, device=None):
    """The two matrices ``(W_h, W_w)`` with ``imresize(x) == W_h @ x @ W_w.T`` for ``x`` of
    spatial size ``in_size = (h, w)``."""
    (oh, ow), (sh, sw) = output_size(in_size, scale=scale, size=size)
    wh = weight_matrix(in_size[0], oh, scale=sh, antialias=antialias, dtype=dtype, device=device)
    ww = weight_matrix(in_size[1], ow, scale=sw, antialias=antialias, dtype=dtype, device=device)
    return wh, ww


def imresize(x, scale=None, size=None, antialias=True):
    """MATLAB ``imresize(x, scale)`` / ``imresize(x, [h w])`` with the bicubic kernel.

    ``x``: float tensor CxHxW or BxCxHxW (any float dtype and device). ``scale``: a positive number
    or ``(scale_h, scale_w)``; ``size``: an int or ``(h, w)``. Exactly one of them. Values are not
    clamped (bicubic over/undershoots, as in MATLAB). Half-precision inputs are resized in float32
    and cast back.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"imresize expects a torch tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"imresize expects a float tensor, got dtype {x.dtype}")
    if x.dim() not in (3, 4):
        raise ValueError(f"imresize expects a CxHxW or BxCxHxW tensor, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"imresize got an empty tensor of shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        # A dense matmul would smear one NaN/Inf over whole rows and columns.
        raise ValueError("imresize input contains NaN or Inf")
    (oh, ow), (sh, sw) = output_size(x.shape[-2:], scale=scale, size=size)
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    wh = _weight_matrix_cpu64(x.shape[-2], oh, sh, bool(antialias)).to(dtype=work, device=x.device)
    ww = _weight_matrix_cpu64(x.shape[-1], ow, sw, bool(antialias)).to(dtype=work, device=x.device)
    y = x.to(work)
    if sh <= sw:   # MATLAB's order: smaller scale first (fewer operations when it shrinks)
        y = torch.matmul(wh, y)
        y = torch.matmul(y, ww.t())
    else:
        y = torch.matmul(y, ww.t())
        y = torch.matmul(wh, y)
    return y.to(x.dtype)
