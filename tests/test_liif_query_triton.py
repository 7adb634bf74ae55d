"""Triton backend of liif_query vs the reference: on a GPU, or on CPU through the interpreter.

Without CUDA, tests/conftest.py sets TRITON_INTERPRET=1 and the kernels run on CPU tensors
(fp32 only, small shapes). On a GPU every tensor is a CUDA tensor (DEV, liif_helpers.triton_device).
GPU-only tests (reduced precision, real sizes) skip without a GPU or under the interpreter.
"""
import pytest
import torch

from fastliif.ops import availability, dot_precision, liif_query
from fastliif.reference import make_cell, make_coord, query_rgb_reference
from liif_helpers import (FLAGS, GPU_REASON, assert_close_rel, assert_grad_close, make_mlp, on_real_gpu, params,
                          random_queries, run_both, triton_device)

pytest.importorskip("triton")
DEV, WHY = triton_device()
if DEV is None:
    pytest.skip(WHY, allow_module_level=True)

import fastliif.kernels.liif_query as klq  # noqa: E402  (after the skip: needs triton)

gpu = pytest.mark.skipif(not on_real_gpu(), reason=GPU_REASON)


def to_dev(*tensors):
    return [t.to(DEV) for t in tensors]


@pytest.fixture(autouse=True)
def ieee_matmuls():
    """The default precision is IEEE fp32 unless a test changes PyTorch's knobs."""
    old = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(old[0])
    torch.backends.cuda.matmul.allow_tf32 = old[1]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q", [(1, 3, 1, 1, 37), (2, 5, 3, 5, 70), (2, 4, 7, 4, 17)])
def test_forward_matches_reference(flags, B, C, h, w, Q):
    torch.manual_seed(hash((B, C, h, w, Q, flags)) % 2**31)
    feat, = to_dev(torch.randn(B, C, h, w))
    coord, cell = to_dev(*random_queries(B, Q, torch.float32, -1.2, 1.2, h=h))
    mlp = make_mlp(C, [32, 32, 32], flags).to(DEV)
    out, ref = run_both(feat, coord, cell, mlp, flags, "triton")
    assert_close_rel(out, ref, 5e-6, f"triton {flags}")


@pytest.mark.parametrize("hidden,out_dim", [([16], 3), ([64, 64], 1), ([32, 32], 4), ([16] * 5, 2)])
def test_forward_mlp_depths_and_widths(hidden, out_dim):
    torch.manual_seed(len(hidden) * 7 + out_dim)
    flags = (True, True, True)
    feat, = to_dev(torch.randn(2, 3, 4, 5))
    coord, cell = to_dev(*random_queries(2, 40, torch.float32, h=4))
    mlp = make_mlp(3, hidden, flags, out_dim=out_dim).to(DEV)
    out, ref = run_both(feat, coord, cell, mlp, flags, "triton")
    assert out.shape == (2, 40, out_dim)
    assert_close_rel(out, ref, 5e-6, f"hidden {hidden}")


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.7, 30.0])
@pytest.mark.parametrize("local_ensemble", [True, False])
def test_forward_output_grids_at_scales(scale, local_ensemble):
    torch.manual_seed(int(scale * 10))
    h, w = 4, 3
    H, W = max(1, round(h * scale)), max(1, round(w * scale))
    if H * W > 600:  # keep the interpreter quick: a band of rows of the grid
        H = max(1, 600 // W)
    feat, = to_dev(torch.randn(1, 4, h, w))
    coord = make_coord((H, W)).unsqueeze(0)
    coord, cell = to_dev(coord, make_cell(coord, (H, W)))
    flags = (True, local_ensemble, True)
    out, ref = run_both(feat, coord, cell, make_mlp(4, [16, 16], flags).to(DEV), flags, "triton")
    assert_close_rel(out, ref, 5e-6, f"x{scale}")


def test_forward_border_and_outside_coords():
    torch.manual_seed(1)
    edges = torch.tensor([-1.0, 1.0, -1 + 1e-6, 1 - 1e-6, -1.5, 1.5, 0.0, 0.5])
    ys, xs = torch.meshgrid(edges, edges, indexing="ij")
    coord = torch.stack([ys, xs], -1).view(1, -1, 2).repeat(2, 1, 1)
    feat, coord, cell = to_dev(torch.randn(2, 3, 4, 6), coord, torch.full_like(coord, 2 / 17))
    for flags in FLAGS:
        out, ref = run_both(feat, coord, cell, make_mlp(3, [16], flags).to(DEV), flags, "triton")
        assert_close_rel(out, ref, 5e-6, f"border {flags}")


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q,hidden", [(2, 4, 3, 5, 45, [32, 32, 32]), (1, 2, 1, 1, 20, [16])])
def test_backward_matches_reference(flags, B, C, h, w, Q, hidden):
    torch.manual_seed(hash((B, C, h, w, Q, flags, len(hidden))) % 2**31)
    feat_unfold, local_ensemble, cell_decode = flags
    feat = torch.randn(B, C, h, w, device=DEV, requires_grad=True)
    coord, cell = to_dev(*random_queries(B, Q, torch.float32, -1.1, 1.1, h=h))
    mlp = make_mlp(C, hidden, flags).to(DEV)
    weights, biases = params(mlp)
    inputs = [feat, *weights, *biases]
    g = torch.randn(B, Q, 3, device=DEV)
    ref = torch.autograd.grad(query_rgb_reference(feat, coord, cell, mlp, *flags), inputs, g)
    out = liif_query(feat, coord, cell, weights, biases, feat_unfold=feat_unfold, local_ensemble=local_ensemble,
                     cell_decode=cell_decode, backend="triton")
    got = torch.autograd.grad(out, inputs, g)
    names = ["feat"] + [f"W{i}" for i in range(len(weights))] + [f"b{i}" for i in range(len(biases))]
    for name, a, b in zip(names, got, ref):
        assert_grad_close(a, b, 1e-5, f"grad {name}")


def test_non_contiguous_inputs_and_many_tiles():
    torch.manual_seed(3)
    flags = (True, True, True)
    feat = torch.randn(2, 10, 5, 9, device=DEV)[:, ::2, :, 1:8]
    coord = (torch.rand(2, 2, 150, device=DEV) * 2 - 1).transpose(1, 2)
    cell = torch.full((2, 150, 4), 0.05, device=DEV)[..., ::2]
    mlp = make_mlp(5, [16, 16], flags).to(DEV)
    weights, biases = params(mlp)
    ref = query_rgb_reference(feat.contiguous(), coord.contiguous(), cell.contiguous(), mlp, *flags)
    out = liif_query(feat, coord, cell, [W.t().contiguous().t() for W in weights], biases, backend="triton")
    assert_close_rel(out, ref, 5e-6, "non-contiguous")


def test_empty_queries():
    feat = torch.randn(2, 3, 4, 4, device=DEV, requires_grad=True)
    weights, biases = params(make_mlp(3, [16, 16], (True, True, True)).to(DEV))
    coord = torch.empty(2, 0, 2, device=DEV)
    out = liif_query(feat, coord, coord.clone(), weights, biases, backend="triton")
    assert out.shape == (2, 0, 3)
    out.sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() == 0


@pytest.mark.parametrize("hidden,out_dim,match", [
    ([32, 16], 3, "one width"), ([24], 3, "power-of-two"), ([], 3, "at least one hidden layer"),
    ([16], 17, "out_dim <= 16")])
def test_unsupported_decoders_are_refused(hidden, out_dim, match):
    flags = (True, True, True)
    feat, = to_dev(torch.randn(1, 2, 3, 3))
    coord, cell = to_dev(*random_queries(1, 5, torch.float32, h=3))
    weights, biases = params(make_mlp(2, hidden, flags, out_dim=out_dim).to(DEV))
    with pytest.raises(ValueError, match=match):
        liif_query(feat, coord, cell, weights, biases, backend="triton")


def test_float64_is_refused():
    feat = torch.randn(1, 2, 3, 3, dtype=torch.float64, device=DEV)
    coord, cell = to_dev(*random_queries(1, 5, torch.float64, h=3))
    weights, biases = params(make_mlp(2, [16], (True, True, True), torch.float64).to(DEV))
    with pytest.raises(TypeError, match="float32, bfloat16 and float16"):
        liif_query(feat, coord, cell, weights, biases, backend="triton")


def test_precision_follows_pytorch_knobs():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert dot_precision(torch.float32, cpu) == "ieee"
    torch.set_float32_matmul_precision("high")
    assert dot_precision(torch.float32, cpu) == "tf32"
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = True
    assert dot_precision(torch.float32, cuda) == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = False
    assert dot_precision(torch.bfloat16, cuda) == "bf16"
    assert dot_precision(torch.float16, cuda) == "fp16"
    assert dot_precision(torch.float32, cuda, "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        dot_precision(torch.float32, cuda, "fp8")


# ---------------------------------------------------------------- GPU only: reduced precision


def _errors(precision, dtype, flags=(True, True, True)):
    """(fused error, PyTorch's own error) against a float64 reference, relative max-norm."""
    torch.manual_seed(21)
    C, h, w, B, Q = 64, 24, 20, 2, 4096
    mlp = make_mlp(C, [256] * 4, flags).to(DEV)
    feat = torch.randn(B, C, h, w, device=DEV)
    coord, cell = to_dev(*random_queries(B, Q, torch.float32, h=h))
    ref64 = query_rgb_reference(feat.double(), coord.double(), cell.double(), mlp.double(), *flags)
    mlp.float()
    weights, biases = params(mlp)
    if dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch_out = query_rgb_reference(feat, coord, cell, mlp, *flags)
        out = liif_query(feat, coord, cell, weights, biases, backend="triton", precision=precision)
    else:
        with torch.autocast("cuda", dtype=dtype):
            torch_out = query_rgb_reference(feat, coord, cell, mlp, *flags)
            out = liif_query(feat, coord, cell, weights, biases, backend="triton")
        assert out.dtype == dtype
    scale = ref64.abs().max()
    return ((out.double() - ref64).abs().max() / scale).item(), ((torch_out.double() - ref64).abs().max() / scale).item()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision,dtype", [("ieee", torch.float32), ("tf32", torch.float32),
                                             ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_gpu_precision_within_twice_pytorch_error(precision, dtype):
    err, torch_err = _errors(precision, dtype)
    assert err <= 2 * torch_err + 1e-6, f"{precision}: fused error {err:.2e} vs PyTorch's {torch_err:.2e}"


def test_nan_in_features_propagates_as_the_reference():
    torch.manual_seed(21)
    feat = torch.randn(1, 4, 5, 5)
    feat[0, 1, 2, 2] = float("nan")
    weights = to_dev(torch.randn(16, 4 * 9 + 4), torch.randn(16, 16), torch.randn(3, 16))
    biases = to_dev(torch.randn(16), torch.randn(16), torch.randn(3))
    feat, coord, cell = to_dev(feat, torch.rand(1, 60, 2) * 2 - 1, torch.full((1, 60, 2), 0.2))
    want = liif_query(feat, coord, cell, weights, biases, backend="torch")
    got = liif_query(feat, coord, cell, weights, biases, backend="triton")
    assert torch.isnan(want).any() and torch.equal(torch.isnan(got), torch.isnan(want))
