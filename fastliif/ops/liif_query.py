"""fastliif.ops.liif_query: the fused LIIF query (DESIGN.md sections 3 and 4)."""
import contextlib

import torch
import torch.nn.functional as F

from . import _library  # noqa: F401  (fake kernels + autograd for torch.ops.fastliif)
from ._backends import choose, resolve
from ._liif_torch import liif_query_torch

PRECISIONS = ("ieee", "tf32", "bf16", "fp16")
FUSED_GPU = ("triton", "cuda")  # backends whose multiplies follow ``precision`` (dot_precision)


def _check(feat, coord, cell, weights, biases, feat_unfold, cell_decode, mixed_ok=False):
    def fail(msg, exc=ValueError):
        raise exc(f"liif_query: {msg}")

    if not isinstance(feat, torch.Tensor) or feat.dim() != 4:
        fail(f"feat must be a (B, C, h, w) tensor, got {getattr(feat, 'shape', type(feat))}")
    B, C, h, w = feat.shape
    if C == 0 or h == 0 or w == 0:
        fail(f"feat must have channels and a non-empty feature map, got shape {tuple(feat.shape)}")
    if not feat.is_floating_point():
        fail(f"feat must be floating point, got {feat.dtype}", TypeError)
    if not isinstance(coord, torch.Tensor) or coord.dim() != 3 or coord.shape[-1] != 2:
        fail(f"coord must be a (B, Q, 2) tensor, got {getattr(coord, 'shape', type(coord))}")
    if coord.shape[0] != B:
        fail(f"coord batch {coord.shape[0]} does not match feat batch {B}")
    tensors = {"feat": feat, "coord": coord}
    if cell_decode:
        if cell is None:
            fail("cell is required when cell_decode=True")
        if not isinstance(cell, torch.Tensor) or cell.shape != coord.shape:
            fail(f"cell must have coord's shape {tuple(coord.shape)}, got {getattr(cell, 'shape', type(cell))}")
        tensors["cell"] = cell
    weights, biases = list(weights), list(biases)
    if len(weights) == 0 or len(weights) != len(biases):
        fail(f"need one bias per weight and at least one layer, got {len(weights)} weights, {len(biases)} biases")
    in_dim = C * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
    width = in_dim
    for i, (W, b) in enumerate(zip(weights, biases)):
        if not isinstance(W, torch.Tensor) or W.dim() != 2:
            fail(f"weights[{i}] must be a 2-D (out, in) tensor")
        if W.shape[1] != width:
            what = (f"C*{9 if feat_unfold else 1} + 2{' + 2' if cell_decode else ''} = {in_dim} for C={C}"
                    if i == 0 else f"the previous layer's width {width}")
            fail(f"weights[{i}] has {W.shape[1]} input columns, expected {what}")
        if not isinstance(b, torch.Tensor) or b.shape != (W.shape[0],):
            fail(f"biases[{i}] must have shape ({W.shape[0]},), got {getattr(b, 'shape', type(b))}")
        width = W.shape[0]
        tensors[f"weights[{i}]"] = W
        tensors[f"biases[{i}]"] = b
    for name, t in tensors.items():
        if t.dtype != feat.dtype and not (mixed_ok and t.is_floating_point()):
            fail(f"{name} has dtype {t.dtype} but feat has {feat.dtype}: all inputs must share one dtype", TypeError)
        if t.device != feat.device:
            fail(f"{name} is on {t.device} but feat is on {feat.device}: all inputs must share one device")
    if not torch.compiler.is_compiling() and coord.numel():
        finite = torch.isfinite(coord).all()
        if cell_decode:
            finite = finite & torch.isfinite(cell).all()
        if not bool(finite):
            fail("coord and cell must be finite (found NaN or inf)")
    return weights, biases


def _conv_tf32_state():
    """cuDNN's TF32 switch for convolutions: the per-operator flag where PyTorch has it (2.9+;
    reading the legacy one raises once the new API was used), else the legacy one."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision
    return torch.backends.cudnn.allow_tf32


def _set_conv_tf32_state(state):
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = state if isinstance(state, str) else ("tf32" if state else "ieee")
    else:
        torch.backends.cudnn.allow_tf32 = state if isinstance(state, bool) else state == "tf32"


def conv_allows_tf32():
    """Whether the next cuDNN convolution may use TF32 (for tests and diagnostics)."""
    state = _conv_tf32_state()
    return state == "tf32" if isinstance(state, str) else bool(state)


@contextlib.contextmanager
def conv_precision(precision):
    """cuDNN TF32 on for the reduced precisions, off for "ieee", restored afterwards; a no-op for
    None (the caller's settings stand). cuDNN allows TF32 by default, which made the "ieee"
    projection TF32 on a GPU (~5e-5 relative error instead of ~3e-7)."""
    if precision is None:
        yield
        return
    old = _conv_tf32_state()
    _set_conv_tf32_state(precision != "ieee")
    try:
        yield
    finally:
        _set_conv_tf32_state(old)


def project_features(feat, w_feat, feat_unfold, precision=None):
    """First layer's feature columns applied at every feature cell: (B, h, w, N1).

    unfold(3x3) followed by those columns is exactly a 3x3 convolution with the columns
    reshaped to (N1, C, 3, 3); without unfolding it is a 1x1 convolution (a convolution, not
    a matmul, so that one switch, cuDNN's TF32 flag, governs both). ``precision`` (see
    conv_precision) sets that switch for the call.
    """
    n1 = w_feat.shape[0]
    C = feat.shape[1]
    k = 3 if feat_unfold else 1
    kernel = w_feat.reshape(n1, C, k, k)
    with conv_precision(precision):
        proj = F.conv2d(feat.contiguous(memory_format=torch.channels_last), kernel, padding=k // 2)
    return proj.permute(0, 2, 3, 1)


def check_precision(precision):
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"liif_query: precision must be one of {PRECISIONS} or None, got {precision!r}")


def dot_precision(dtype, device, precision=None):
    """tl.dot operand precision following PyTorch's knobs; ``precision`` overrides.

    IEEE fp32 by default; TF32 when torch.get_float32_matmul_precision() != "highest" or
    torch.backends.cuda.matmul.allow_tf32; bf16/fp16 operands (fp32 accumulation) under
    autocast or for bf16/fp16 inputs.
    """
    if precision is not None:
        check_precision(precision)
        return precision
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16" if dtype == torch.bfloat16 else "fp16"
    if device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        return "bf16" if torch.get_autocast_dtype("cuda") == torch.bfloat16 else "fp16"
    return "tf32" if _matmul_allows_tf32() else "ieee"


def _matmul_allows_tf32():
    """PyTorch's fp32 matmul switch. The per-backend flag (2.9+) reflects the legacy settings too
    (set_float32_matmul_precision, allow_tf32), while reading the legacy ones raises once the new
    API was used; older PyTorch has only the legacy ones."""
    new = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if new is not None:
        return new not in ("ieee", "none")
    return torch.get_float32_matmul_precision() != "highest" or torch.backends.cuda.matmul.allow_tf32


def _query_triton(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, precision):
    from ..kernels.liif_query import liif_query_triton  # imported only when used
    from ._liif_torch import corner_geometry

    B, h, w, _ = proj.shape
    Q = coord.shape[1]
    cells, rel, wts = corner_geometry(coord, h, w, local_ensemble)
    nc = cells.shape[0]
    rows = (cells + (torch.arange(B, device=coord.device) * (h * w)).view(1, B, 1)).reshape(nc, B * Q)
    relcell = None
    if cell is not None:
        relcell = (cell * torch.tensor([h, w], device=cell.device, dtype=cell.dtype)).reshape(B * Q, 2)
    geometry = (rows, rel.reshape(nc, B * Q, 2), wts.reshape(nc, B * Q))
    out = liif_query_triton(proj, geometry, relcell, w_rel, b1, weights, biases, precision)
    return out.view(B, Q, out.shape[-1])


CUDA_MAX_LAYERS, CUDA_MAX_WIDTH = 8, 256


def _rejects(weights, needs_grad):
    """rejects(name) for backends.choose: why a fused backend cannot run this decoder (or None)."""
    def rejects(name):
        if name == "cuda":  # limits of csrc/cuda/kernels.h (kLiifMaxLayers, kLiifMaxWidth)
            widths = [w.shape[0] for w in weights]
            if len(weights) - 1 > CUDA_MAX_LAYERS or max(widths) > CUDA_MAX_WIDTH:
                return (f"the CUDA kernel takes at most {CUDA_MAX_LAYERS} layers after the first and widths up to "
                        f"{CUDA_MAX_WIDTH}, got widths {widths}")
            if needs_grad and torch.are_deterministic_algorithms_enabled():
                return "its backward scatters the feature gradient with atomics (not deterministic)"
            return None
        if name != "triton":
            return None
        from ..kernels.liif_query import check_supported  # only asked when triton is available
        try:
            check_supported(weights[0].shape[0], weights[1:])
        except ValueError as exc:
            return str(exc)
        if needs_grad and torch.are_deterministic_algorithms_enabled():
            return "its backward adds gradients with atomics (not deterministic)"
        return None
    return rejects


def choose_backend(feat, weights, backend="auto", needs_grad=None, dtype=None):
    """(name, reason): the backend liif_query will run for these features and decoder weights
    (the rule: fastliif.ops._backends). ``needs_grad`` defaults to whether a gradient is being
    recorded; ``dtype`` to feat's (the autocast dtype under autocast)."""
    if needs_grad is None:
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in [feat, *weights])
    return choose(backend, feat.device, dtype or feat.dtype, rejects=_rejects(list(weights), needs_grad))


def liif_query(feat, coord, cell, weights, biases, *, feat_unfold=True, local_ensemble=True,
               cell_decode=True, backend="auto", precision=None):
    """Fused LIIF query: same numbers as the official ``LIIF.query_rgb``.

    Args:
        feat: (B, C, h, w) encoder features.
        coord: (B, Q, 2) query coordinates in [-1, 1], [..., 0] = row, [..., 1] = column.
            Coordinates outside [-1, 1] are allowed (sampling clamps, rel_coord does not).
        cell: (B, Q, 2) cell sizes (2/H, 2/W); ignored (may be None) with cell_decode=False.
        weights, biases: the decoder MLP's Linear parameters in PyTorch layout, first to
            last, ReLU between layers; weights[0] has C*9 (C without unfolding) + 2 (+ 2)
            input columns.
        backend: "auto" | "torch" | "cpu" | "triton" | "cuda"; "auto" follows the rule in
            fastliif.ops._backends (``choose_backend`` tells which one runs, and why).
        precision: None | "ieee" | "tf32" | "bf16" | "fp16": the multiplies of the GPU
            backends (triton, cuda), the 3x3 projection's cuDNN TF32 switch included; default
            follows PyTorch's matmul-precision and autocast settings (see dot_precision).
            The cpu and torch backends compute in the tensors' dtype and accept any valid value.

    Returns (B, Q, out_dim). Gradients flow to feat, weights and biases; coord and cell
    receive none (documented: no LIIF training recipe needs them). The triton backward adds
    gradients with atomics, so they are not bit-identical run to run; under
    ``torch.use_deterministic_algorithms(True)`` it refuses (auto picks another backend).
    """
    check_precision(precision)
    amp = torch.is_autocast_enabled(feat.device.type) if isinstance(feat, torch.Tensor) else False
    weights, biases = _check(feat, coord, cell, weights, biases, feat_unfold, cell_decode, mixed_ok=amp)
    if amp:  # autocast: reduced-precision operands, fp32 accumulation where the backend allows
        amp_dtype = torch.get_autocast_dtype(feat.device.type)
        with torch.autocast(feat.device.type, enabled=False):
            return _liif_query_amp(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode,
                                   backend, precision, amp_dtype)
    name = choose_backend(feat, weights, backend)[0]
    return _liif_query(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode, name,
                       precision)


def _liif_query_amp(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode, backend,
                    precision, amp_dtype):
    """Triton keeps fp32 storage and multiplies amp_dtype operands; other backends run in amp_dtype."""
    name = choose_backend(feat, weights, backend, dtype=amp_dtype)[0]
    if name == "triton":
        cast = lambda t: t.float()  # noqa: E731
        precision = precision or ("bf16" if amp_dtype == torch.bfloat16 else "fp16")
    else:
        cast = lambda t: t.to(amp_dtype)  # noqa: E731
    out = _liif_query(cast(feat), coord.float(), None if cell is None else cell.float(), [cast(w) for w in weights],
                      [cast(b) for b in biases], feat_unfold, local_ensemble, cell_decode, name, precision)
    return out.to(amp_dtype)


def _liif_query(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode, backend, precision):
    name = resolve(backend, feat.device, feat.dtype)  # already chosen: validates device and dtype
    C = feat.shape[1]
    n_feat = C * 9 if feat_unfold else C
    w1 = weights[0]
    precision = dot_precision(feat.dtype, feat.device, precision) if name in FUSED_GPU else None
    proj = project_features(feat, w1[:, :n_feat], feat_unfold, precision)
    return liif_query_projected(proj, coord, cell, w1[:, n_feat:], biases[0], weights[1:], biases[1:],
                                local_ensemble, cell_decode, name, precision)


def liif_query_projected(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode, backend,
                         precision=None):
    """The query on features already projected by ``project_features`` (B, h, w, N1); ``w_rel``:
    the first layer's coordinate (and cell) columns, ``b1`` its bias, ``weights``/``biases`` the
    later layers. ``backend`` names a backend (not "auto"). Lets a caller that projects once
    (fastliif.upscale, tile by tile) query many times."""
    # coord and cell are treated as constants by every backend (no gradient, documented)
    coord = coord.detach()
    cell = cell.detach() if cell_decode else None
    if backend == "triton":
        return _query_triton(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble,
                             dot_precision(proj.dtype, proj.device, precision))
    if backend == "cuda":
        return torch.ops.fastliif.liif_query_core(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble,
                                                  cell_decode, dot_precision(proj.dtype, proj.device, precision))
    if backend == "cpu":
        return torch.ops.fastliif.liif_query_core(proj, coord, cell, w_rel, b1, weights, biases,
                                                  local_ensemble, cell_decode)
    return liif_query_torch(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode)


__all__ = ["liif_query", "liif_query_projected", "project_features", "dot_precision", "choose_backend",
           "conv_precision", "PRECISIONS"]
