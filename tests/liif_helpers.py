"""Shared helpers of the liif_query tests: decoders, random queries, error measures."""
import itertools

import torch

from fastliif.ops import liif_query
from fastliif.reference import MLP, make_cell, make_coord, query_rgb_reference

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


# ---- the checks every fused GPU backend passes (test_liif_query_triton.py, test_cuda_backend.py)
# Written once, run per backend: the Triton file runs them through the interpreter on CPU, so
# the checks themselves are exercised on every machine even where the CUDA backend is absent.

def _to(dev, *tensors):
    return [t.to(dev) for t in tensors]


def check_forward(backend, dev, flags, B, C, h, w, Q, hidden=(32, 32, 32), tol=5e-6):
    torch.manual_seed(hash((B, C, h, w, Q, flags)) % 2**31)
    feat, = _to(dev, torch.randn(B, C, h, w))
    coord, cell = _to(dev, *random_queries(B, Q, torch.float32, -1.2, 1.2, h=h))
    out, ref = run_both(feat, coord, cell, make_mlp(C, list(hidden), flags).to(dev), flags, backend)
    assert_close_rel(out, ref, tol, f"{backend} {flags}")


def check_mlp_shape(backend, dev, hidden, out_dim, Q, tol):
    torch.manual_seed(len(hidden) * 7 + out_dim)
    flags = (True, True, True)
    feat, = _to(dev, torch.randn(2, 3, 4, 5))
    coord, cell = _to(dev, *random_queries(2, Q, torch.float32, h=4))
    out, ref = run_both(feat, coord, cell, make_mlp(3, hidden, flags, out_dim=out_dim).to(dev), flags, backend)
    assert out.shape == (2, Q, out_dim)
    assert_close_rel(out, ref, tol, f"hidden {hidden}")


def check_output_grid(backend, dev, scale, local_ensemble, max_queries=None):
    """A whole output grid (every pixel centre) at ``scale``; ``max_queries`` keeps a band of rows."""
    torch.manual_seed(int(scale * 10))
    h, w = 4, 3
    H, W = max(1, round(h * scale)), max(1, round(w * scale))
    if max_queries and H * W > max_queries:
        H = max(1, max_queries // W)
    feat, = _to(dev, torch.randn(1, 4, h, w))
    coord = make_coord((H, W)).unsqueeze(0)
    coord, cell = _to(dev, coord, make_cell(coord, (H, W)))
    flags = (True, local_ensemble, True)
    out, ref = run_both(feat, coord, cell, make_mlp(4, [16, 16], flags).to(dev), flags, backend)
    assert_close_rel(out, ref, 5e-6, f"x{scale}")


def check_border_coords(backend, dev):
    torch.manual_seed(1)
    edges = torch.tensor([-1.0, 1.0, -1 + 1e-6, 1 - 1e-6, -1.5, 1.5, 0.0, 0.5])
    ys, xs = torch.meshgrid(edges, edges, indexing="ij")
    coord = torch.stack([ys, xs], -1).view(1, -1, 2).repeat(2, 1, 1)
    feat, coord, cell = _to(dev, torch.randn(2, 3, 4, 6), coord, torch.full_like(coord, 2 / 17))
    for flags in FLAGS:
        out, ref = run_both(feat, coord, cell, make_mlp(3, [16], flags).to(dev), flags, backend)
        assert_close_rel(out, ref, 5e-6, f"border {flags}")


def check_backward(backend, dev, flags, B, C, h, w, Q, hidden, tol=1e-5):
    torch.manual_seed(hash((B, C, h, w, Q, flags, len(hidden))) % 2**31)
    feat_unfold, local_ensemble, cell_decode = flags
    feat = torch.randn(B, C, h, w, device=dev, requires_grad=True)
    coord, cell = _to(dev, *random_queries(B, Q, torch.float32, -1.1, 1.1, h=h))
    mlp = make_mlp(C, hidden, flags).to(dev)
    weights, biases = params(mlp)
    inputs = [feat, *weights, *biases]
    g = torch.randn(B, Q, 3, device=dev)
    ref = torch.autograd.grad(query_rgb_reference(feat, coord, cell, mlp, *flags), inputs, g)
    out = liif_query(feat, coord, cell, weights, biases, feat_unfold=feat_unfold, local_ensemble=local_ensemble,
                     cell_decode=cell_decode, backend=backend)
    got = torch.autograd.grad(out, inputs, g)
    names = ["feat"] + [f"W{i}" for i in range(len(weights))] + [f"b{i}" for i in range(len(biases))]
    for name, a, b in zip(names, got, ref):
        assert_grad_close(a, b, tol, f"grad {name}")


def check_non_contiguous(backend, dev, Q):
    torch.manual_seed(3)
    flags = (True, True, True)
    feat = torch.randn(2, 10, 5, 9, device=dev)[:, ::2, :, 1:8]
    coord = (torch.rand(2, 2, Q, device=dev) * 2 - 1).transpose(1, 2)
    cell = torch.full((2, Q, 4), 0.05, device=dev)[..., ::2]
    mlp = make_mlp(5, [16, 16], flags).to(dev)
    weights, biases = params(mlp)
    ref = query_rgb_reference(feat.contiguous(), coord.contiguous(), cell.contiguous(), mlp, *flags)
    out = liif_query(feat, coord, cell, [W.t().contiguous().t() for W in weights], biases, backend=backend)
    assert_close_rel(out, ref, 5e-6, "non-contiguous")


def check_empty_queries(backend, dev):
    feat = torch.randn(2, 3, 4, 4, device=dev, requires_grad=True)
    weights, biases = params(make_mlp(3, [16, 16], (True, True, True)).to(dev))
    coord = torch.empty(2, 0, 2, device=dev)
    out = liif_query(feat, coord, coord.clone(), weights, biases, backend=backend)
    assert out.shape == (2, 0, 3)
    out.sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() == 0


def precision_errors(backend, dev, precision, dtype, flags=(True, True, True)):
    """(fused error, PyTorch's own error in the same precision) against a float64 reference,
    relative max-norm, on the LIIF decoder at a real size (GPU tests: flash-attention's rule)."""
    torch.manual_seed(21)
    C, h, w, B, Q = 64, 24, 20, 2, 4096
    mlp = make_mlp(C, [256] * 4, flags).to(dev)
    feat = torch.randn(B, C, h, w, device=dev)
    coord, cell = _to(dev, *random_queries(B, Q, torch.float32, h=h))
    ref64 = query_rgb_reference(feat.double(), coord.double(), cell.double(), mlp.double(), *flags)
    mlp.float()
    weights, biases = params(mlp)
    if dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch_out = query_rgb_reference(feat, coord, cell, mlp, *flags)
        out = liif_query(feat, coord, cell, weights, biases, backend=backend, precision=precision)
    else:
        with torch.autocast("cuda", dtype=dtype):
            torch_out = query_rgb_reference(feat, coord, cell, mlp, *flags)
            out = liif_query(feat, coord, cell, weights, biases, backend=backend)
        assert out.dtype == dtype
    return rel_err(out.double(), ref64), rel_err(torch_out.double(), ref64)
