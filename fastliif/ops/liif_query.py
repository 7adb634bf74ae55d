"""fastliif.ops.liif_query: the fused LIIF query (DESIGN.md sections 3 and 4)."""
import torch
import torch.nn.functional as F

from . import _library  # noqa: F401  (fake kernels + autograd for torch.ops.fastliif)
from ._backends import resolve
from ._liif_torch import liif_query_torch


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


def project_features(feat, w_feat, feat_unfold):
    """First layer's feature columns applied at every feature cell: (B, h, w, N1).

    unfold(3x3) followed by those columns is exactly a 3x3 convolution with the columns
    reshaped to (N1, C, 3, 3); without unfolding it is a 1x1 projection.
    """
    n1 = w_feat.shape[0]
    C = feat.shape[1]
    if feat_unfold:
        kernel = w_feat.reshape(n1, C, 3, 3)
        proj = F.conv2d(feat.contiguous(memory_format=torch.channels_last), kernel, padding=1)
        return proj.permute(0, 2, 3, 1)
    return torch.matmul(feat.permute(0, 2, 3, 1), w_feat.t())


def dot_precision(dtype, device, precision=None):
    """tl.dot operand precision following PyTorch's knobs; ``precision`` overrides.

    IEEE fp32 by default; TF32 when torch.get_float32_matmul_precision() != "highest" or
    torch.backends.cuda.matmul.allow_tf32; bf16/fp16 operands (fp32 accumulation) under
    autocast or for bf16/fp16 inputs.
    """
    choices = ("ieee", "tf32", "bf16", "fp16")
    if precision is not None:
        if precision not in choices:
            raise ValueError(f"liif_query: precision must be one of {choices}, got {precision!r}")
        return precision
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16" if dtype == torch.bfloat16 else "fp16"
    if device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        return "bf16" if torch.get_autocast_dtype("cuda") == torch.bfloat16 else "fp16"
    if torch.get_float32_matmul_precision() != "highest" or torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


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
        backend: "auto" | "torch" | "cpu" | "triton" (| "cuda" when available).
        precision: triton and cuda backends: "ieee" | "tf32" | "bf16" | "fp16"; default follows
            PyTorch's matmul-precision and autocast settings (see dot_precision).

    Returns (B, Q, out_dim). Gradients flow to feat, weights and biases; coord and cell
    receive none (documented: no LIIF training recipe needs them).
    """
    amp = torch.is_autocast_enabled(feat.device.type)
    weights, biases = _check(feat, coord, cell, weights, biases, feat_unfold, cell_decode, mixed_ok=amp)
    if amp:  # autocast: reduced-precision operands, fp32 accumulation where the backend allows
        amp_dtype = torch.get_autocast_dtype(feat.device.type)
        with torch.autocast(feat.device.type, enabled=False):
            return _liif_query_amp(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode,
                                   backend, precision, amp_dtype)
    return _liif_query(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode, backend,
                       precision)


def _liif_query_amp(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode, backend,
                    precision, amp_dtype):
    """Triton keeps fp32 storage and multiplies amp_dtype operands; other backends run in amp_dtype."""
    name = resolve(backend, feat.device, amp_dtype)
    if name == "triton":
        cast = lambda t: t.float()  # noqa: E731
        precision = precision or ("bf16" if amp_dtype == torch.bfloat16 else "fp16")
    else:
        cast = lambda t: t.to(amp_dtype)  # noqa: E731
    out = _liif_query(cast(feat), coord.float(), None if cell is None else cell.float(), [cast(w) for w in weights],
                      [cast(b) for b in biases], feat_unfold, local_ensemble, cell_decode, name, precision)
    return out.to(amp_dtype)


def _liif_query(feat, coord, cell, weights, biases, feat_unfold, local_ensemble, cell_decode, backend, precision):
    name = resolve(backend, feat.device, feat.dtype)
    C = feat.shape[1]
    n_feat = C * 9 if feat_unfold else C
    w1 = weights[0]
    proj = project_features(feat, w1[:, :n_feat], feat_unfold)
    w_rel = w1[:, n_feat:]
    # coord and cell are treated as constants by every backend (no gradient, documented)
    coord = coord.detach()
    cell = cell.detach() if cell_decode else None
    if name == "triton":
        return _query_triton(proj, coord, cell, w_rel, biases[0], weights[1:], biases[1:], local_ensemble,
                             dot_precision(feat.dtype, feat.device, precision))
    if name == "cuda":
        return torch.ops.fastliif.liif_query_core(proj, coord, cell, w_rel, biases[0], weights[1:], biases[1:],
                                                  local_ensemble, cell_decode,
                                                  dot_precision(feat.dtype, feat.device, precision))
    if name == "cpu":
        return torch.ops.fastliif.liif_query_core(proj, coord, cell, w_rel, biases[0], weights[1:], biases[1:],
                                                  local_ensemble, cell_decode)
    return liif_query_torch(proj, coord, cell, w_rel, biases[0], weights[1:], biases[1:],
                            local_ensemble, cell_decode)


__all__ = ["liif_query", "project_features", "dot_precision"]
