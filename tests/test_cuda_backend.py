"""C++/CUDA backend (csrc/cuda) of liif_query and dynamic_conv vs the reference and vs Triton.

GPU-only: the whole module skips without a CUDA device or without the CUDA build of
fastliif._C (saying which). The kernels' compilation is checked without a GPU by
tests/test_nvcc_check.py, and their index math by the CPU tests (csrc/index_math.h is shared).
Matrices follow tests/test_liif_query_triton.py and tests/test_dynamic_conv_triton.py.
"""
import pytest
import torch

from fastliif.ops import availability, dynamic_conv, liif_query
from fastliif.reference.dynamic_conv import dynamic_conv_reference
from liif_helpers import (FLAGS, assert_close_rel, check_backward, check_border_coords, check_empty_queries,
                          check_forward, check_mlp_shape, check_non_contiguous, check_output_grid, make_mlp, params,
                          precision_errors, random_queries, run_both)

if not torch.cuda.is_available():
    pytest.skip("CUDA backend tests need a CUDA device (none here)", allow_module_level=True)
if not availability()["cuda"][0]:
    pytest.skip(f"cuda backend unavailable: {availability()['cuda'][1]}", allow_module_level=True)

DEV = torch.device("cuda")
pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def ieee_matmuls():
    """IEEE fp32 everywhere (the reference's matmuls and the projection's cuDNN conv)."""
    old = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(old[0])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[1], old[2]


def to_dev(*tensors):
    return [t.to(DEV) for t in tensors]


# ---------------------------------------------------------------- liif_query


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q", [(1, 3, 1, 1, 37), (2, 5, 3, 5, 70), (2, 4, 7, 4, 17), (3, 8, 11, 6, 1000)])
def test_forward_matches_reference(flags, B, C, h, w, Q):
    check_forward("cuda", DEV, flags, B, C, h, w, Q)


# widths that are not multiples of 16 or 32, a single Linear (no hidden layer), the LIIF decoder
@pytest.mark.parametrize("hidden,out_dim", [([16], 3), ([64, 64], 1), ([24, 40], 5), ([], 3), ([256] * 4, 3),
                                            ([16] * 8, 2), ([200], 256)])
def test_forward_mlp_depths_and_widths(hidden, out_dim):
    check_mlp_shape("cuda", DEV, hidden, out_dim, Q=300, tol=1e-5)


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.7, 30.0])
@pytest.mark.parametrize("local_ensemble", [True, False])
def test_forward_output_grids_at_scales(scale, local_ensemble):
    check_output_grid("cuda", DEV, scale, local_ensemble)


def test_forward_border_and_outside_coords():
    check_border_coords("cuda", DEV)


def test_nan_features_stay_nan():
    torch.manual_seed(4)
    flags = (True, True, True)
    feat = torch.randn(1, 3, 5, 5, device=DEV)
    feat[0, 1, 2, 3] = float("nan")
    coord, cell = to_dev(*random_queries(1, 200, torch.float32, h=5))
    out, ref = run_both(feat, coord, cell, make_mlp(3, [16, 16], flags).to(DEV), flags, "cuda")
    assert torch.equal(out.isnan(), ref.isnan())


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q,hidden", [(2, 4, 3, 5, 45, [32, 32, 32]), (1, 2, 1, 1, 20, [16]),
                                              (2, 3, 6, 7, 700, [24, 40]), (1, 3, 4, 4, 50, [])])
def test_backward_matches_reference(flags, B, C, h, w, Q, hidden):
    check_backward("cuda", DEV, flags, B, C, h, w, Q, hidden)


def test_parameter_grads_are_deterministic():
    """Split buffer per block + ordered sum: bitwise the same on every run (dP uses atomics)."""
    torch.manual_seed(8)
    flags = (True, True, True)
    feat = torch.randn(2, 8, 9, 9, device=DEV)
    coord, cell = to_dev(*random_queries(2, 5000, torch.float32, h=9))
    weights, biases = params(make_mlp(8, [64, 64], flags).to(DEV))
    g = torch.randn(2, 5000, 3, device=DEV)
    runs = [torch.autograd.grad(liif_query(feat, coord, cell, weights, biases, backend="cuda"), weights + biases, g)
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_non_contiguous_inputs_and_many_tiles():
    check_non_contiguous("cuda", DEV, Q=1500)


def test_empty_queries():
    check_empty_queries("cuda", DEV)


def test_too_wide_decoder_is_refused():
    flags = (True, True, True)
    feat, = to_dev(torch.randn(1, 2, 3, 3))
    coord, cell = to_dev(*random_queries(1, 5, torch.float32, h=3))
    weights, biases = params(make_mlp(2, [512], flags).to(DEV))
    with pytest.raises(RuntimeError, match="layer widths up to 256"):
        liif_query(feat, coord, cell, weights, biases, backend="cuda")


def test_cuda_agrees_with_triton():
    if not availability()["triton"][0]:
        pytest.skip(f"triton backend unavailable: {availability()['triton'][1]}")
    torch.manual_seed(5)
    flags = (True, True, True)
    feat = torch.randn(2, 16, 12, 10, device=DEV)
    coord, cell = to_dev(*random_queries(2, 3000, torch.float32, h=12))
    weights, biases = params(make_mlp(16, [64] * 3, flags).to(DEV))
    a = liif_query(feat, coord, cell, weights, biases, backend="cuda", precision="ieee")
    b = liif_query(feat, coord, cell, weights, biases, backend="triton", precision="ieee")
    assert_close_rel(a, b, 5e-6, "cuda vs triton")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_precision_within_twice_pytorch_error(dtype):
    err, torch_err = precision_errors("cuda", DEV, "ieee", dtype)
    assert err <= 2 * torch_err + 1e-6, f"{dtype}: cuda error {err:.2e} vs PyTorch's {torch_err:.2e}"


# ---------------------------------------------------------------- dynamic_conv


def _dconv_case(N, C, H, W, k, s, mode, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    kc = (1 if mode == "shared" else C) * k * k * s * s
    image = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    kernel = torch.randn(N, kc, H, W, generator=g, dtype=torch.float64)
    grad = torch.randn(N, C, H * s, W * s, generator=g, dtype=torch.float64)
    return [t.to(DEV, dtype) for t in (image, kernel, grad)]


@pytest.mark.parametrize("mode", ["shared", "per_channel"])
@pytest.mark.parametrize("N,C,H,W,k,s", [(1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 3, 1), (1, 5, 9, 40, 5, 2),
                                         (2, 3, 17, 33, 3, 4), (1, 2, 6, 5, 7, 3), (1, 1, 4, 4, 25, 1)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_dynamic_conv_forward_and_grads(mode, N, C, H, W, k, s, dtype, tol):
    image, kernel, grad = _dconv_case(N, C, H, W, k, s, mode, dtype, seed=N * 100 + k * 10 + s)
    image.requires_grad_()
    kernel.requires_grad_()
    out = dynamic_conv(image, kernel, kernel_size=k, scale=s, mode=mode, backend="cuda")
    gi, gk = torch.autograd.grad(out, [image, kernel], grad)
    i64, k64 = image.detach().double().requires_grad_(), kernel.detach().double().requires_grad_()
    ref = dynamic_conv_reference(i64, k64, k, s, mode)
    ri, rk = torch.autograd.grad(ref, [i64, k64], grad.double())
    assert_close_rel(out.double(), ref, tol, "forward")
    assert_close_rel(gi.double(), ri, tol, "grad image")
    assert_close_rel(gk.double(), rk, tol, "grad kernel")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dynamic_conv_reduced_precision_storage(dtype):
    image, kernel, _ = _dconv_case(2, 3, 16, 20, 5, 2, "shared", dtype, seed=9)
    out = dynamic_conv(image, kernel, kernel_size=5, scale=2, backend="cuda")
    ref = dynamic_conv_reference(image.double(), kernel.double(), 5, 2, "shared")
    assert out.dtype == dtype
    assert_close_rel(out.double(), ref, 1e-2, str(dtype))


def test_dynamic_conv_agrees_with_triton():
    if not availability("dynamic_conv")["triton"][0]:
        pytest.skip(f"triton backend unavailable: {availability('dynamic_conv')['triton'][1]}")
    image, kernel, _ = _dconv_case(2, 8, 64, 48, 5, 2, "shared", torch.float32, seed=3)
    a = dynamic_conv(image, kernel, kernel_size=5, scale=2, backend="cuda")
    b = dynamic_conv(image, kernel, kernel_size=5, scale=2, backend="triton")
    assert_close_rel(a, b, 1e-5, "cuda vs triton")
