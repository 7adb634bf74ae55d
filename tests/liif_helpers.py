"""Shared helpers of the liif_query tests: decoders, random queries, error measures."""
import itertools

import torch

from fastliif.ops import liif_query
from fastliif.reference import MLP, query_rgb_reference

FLAGS = list(itertools.product([True, False], repeat=3))  # feat_unfold, local_ensemble, cell_decode


def make_mlp(C, hidden, flags, dtype=torch.float32, out_dim=3):
    feat_unfold, _, cell_decode = flags
    in_dim = C * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
    mlp = MLP(in_dim, out_dim, hidden).to(dtype)
    with torch.no_grad():  # larger biases than the default init so ReLUs are mixed on and off
        for layer in mlp.layers[0::2]:
            layer.bias.uniform_(-0.3, 0.3)
    return mlp


def params(mlp):
    linears = list(mlp.layers[0::2])
    return [layer.weight for layer in linears], [layer.bias for layer in linears]


def random_queries(B, Q, dtype, lo=-1.0, hi=1.0, scale=4.0, h=8):
    coord = torch.rand(B, Q, 2, dtype=dtype) * (hi - lo) + lo
    cell = torch.full((B, Q, 2), 2.0 / (h * scale), dtype=dtype) * (0.5 + torch.rand(B, Q, 2, dtype=dtype))
    return coord, cell


def run_both(feat, coord, cell, mlp, flags, backend):
    feat_unfold, local_ensemble, cell_decode = flags
    ref = query_rgb_reference(feat, coord, cell, mlp, feat_unfold, local_ensemble, cell_decode)
    weights, biases = params(mlp)
    out = liif_query(feat, coord, cell, weights, biases, feat_unfold=feat_unfold,
                     local_ensemble=local_ensemble, cell_decode=cell_decode, backend=backend)
    return out, ref


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def rel_l2(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_grad_close(a, b, tol, what=""):
    """Gradients compare by relative L2 norm: fp32 ReLU networks evaluated with different
    summation orders may flip a unit sitting at 0 and change a few single entries."""
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    err = rel_l2(a, b)
    assert err <= tol, f"{what}: relative L2 error {err:.3g} > {tol:.3g}"


def assert_close_rel(a, b, tol, what=""):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    err = rel_err(a, b)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:.3g}"


def triton_device():
    """(device, why): where the triton backend runs in this session. CUDA tensors with compiled
    kernels on a GPU; CPU tensors only under TRITON_INTERPRET=1 (tests/conftest.py sets it when
    there is no GPU); None, with the reason, when the backend is unavailable."""
    from fastliif.ops import availability
    from fastliif.ops._backends import triton_interpreting
    ok, reason = availability()["triton"]
    if not ok:
        return None, f"triton backend unavailable: {reason}"
    if triton_interpreting():
        return torch.device("cpu"), "Triton interpreter on CPU tensors"
    return torch.device("cuda"), "compiled Triton kernels on CUDA"


def on_real_gpu():
    """A CUDA device and compiled kernels (not the interpreter): what the GPU-marked tests need."""
    from fastliif.ops._backends import triton_interpreting
    return torch.cuda.is_available() and not triton_interpreting()


GPU_REASON = "needs a CUDA device and compiled Triton kernels (not TRITON_INTERPRET=1)"
