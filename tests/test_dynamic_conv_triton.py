"""Triton backend of dynamic_conv vs the reference: on a GPU, or on CPU through the interpreter.

Without CUDA, tests/conftest.py sets TRITON_INTERPRET=1 and the kernels run on CPU tensors (fp32,
small shapes: the interpreter's time grows with rows x taps). Every output the launchers allocate
is pre-filled with NaN, so an element a kernel fails to write cannot pass. On a GPU every tensor is a
CUDA tensor (DEV, liif_helpers.triton_device). GPU-only tests (reduced precision, many channels,
int64 offsets) skip without a GPU or under the interpreter.
"""
import math

import pytest
import torch

from fastliif.ops import dynamic_conv
from fastliif.reference.dynamic_conv import dynamic_conv_reference
from liif_helpers import GPU_REASON, on_real_gpu, triton_device

pytest.importorskip("triton")
DEV, WHY = triton_device()
if DEV is None:
    pytest.skip(WHY, allow_module_level=True)

import fastliif.kernels.dynamic_conv as kdc  # noqa: E402  (after the skip: needs triton)

gpu = pytest.mark.skipif(not on_real_gpu(), reason=GPU_REASON)
MODES = ("shared", "per_channel")
TOL = 1e-5  # fp32 vs an fp64 reference, relative to the largest reference value


@pytest.fixture(autouse=True)
def nan_poisoned_outputs(monkeypatch):
    """Launcher outputs start as NaN (not torch.empty's leftovers): unwritten elements fail."""
    allocated = []

    def poisoned(shape, like):
        t = torch.full(shape, float("nan"), device=like.device, dtype=like.dtype)
        allocated.append(t)
        return t

    monkeypatch.setattr(kdc, "_empty", poisoned)
    return allocated


def kernel_channels(C, k, s, mode):
    return (1 if mode == "shared" else C) * k * k * s * s


def make_inputs(N, C, H, W, k, s, mode, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    kernel = torch.randn(N, kernel_channels(C, k, s, mode), H, W, generator=g, dtype=torch.float64)
    grad = torch.randn(N, C, H * s, W * s, generator=g, dtype=torch.float64)
    return [t.to(DEV, dtype) for t in (image, kernel, grad)]


def reference_and_grads(image, kernel, grad, k, s, mode):
    """Forward and both gradients of the oracle in float64."""
    image = image.detach().double().requires_grad_()
    kernel = kernel.detach().double().requires_grad_()
    out = dynamic_conv_reference(image, kernel, k, s, mode)
    if out.numel() == 0:
        return out, torch.zeros_like(image), torch.zeros_like(kernel)
    dimg, dker = torch.autograd.grad(out, (image, kernel), grad.double())
    return out.detach(), dimg, dker


def triton_and_grads(image, kernel, grad, k, s, mode):
    image = image.detach().requires_grad_()
    kernel = kernel.detach().requires_grad_()
    out = dynamic_conv(image, kernel, kernel_size=k, scale=s, mode=mode, backend="triton")
    dimg, dker = torch.autograd.grad(out, (image, kernel), grad)
    return out.detach(), dimg, dker


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def assert_close(a, b, tol, what):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    assert a.dtype == b.dtype or b.dtype == torch.float64, f"{what}: dtype {a.dtype}"
    assert torch.isfinite(a).all(), f"{what}: non-finite values (an element left unwritten?)"
    if a.numel():
        err = rel_err(a, b)
        assert err <= tol, f"{what}: relative error {err:.3g} > {tol:.3g}"


def check_all(image, kernel, grad, k, s, mode, tol=TOL, what=""):
    got = triton_and_grads(image, kernel, grad, k, s, mode)
    ref = reference_and_grads(image, kernel, grad, k, s, mode)
    for name, a, b in zip(("out", "d(image)", "d(kernel)"), got, ref):
        assert a.dtype == image.dtype, f"{what} {name}: dtype {a.dtype} != {image.dtype}"
        assert_close(a, b, tol, f"{what} {name}")
    return got


# Every (k, s, mode); channels and shapes rotate so that all of C in {1, 3, 16}, H != W, a single
# row, a single column, several column blocks (W*s > 32, W > 8 under the interpreter) and a channel
# tail (C = 3 and 16 vs blocks of 8) each meet several kernel sizes. Larger k on fewer rows keeps
# the interpreter quick.
SHAPES = {1: [(2, 16, 5, 7), (3, 3, 4, 13)], 3: [(2, 3, 5, 7), (2, 16, 3, 2), (1, 1, 2, 13)],
          5: [(2, 3, 3, 2), (2, 1, 4, 3), (1, 16, 2, 5)], 7: [(2, 3, 2, 5), (1, 16, 3, 2), (2, 1, 1, 6)]}
CASES = [(k, s, mode, SHAPES[k][(s + m) % len(SHAPES[k])])
         for k in (1, 3, 5, 7) for s in (1, 2, 3, 4) for m, mode in enumerate(MODES)]


@pytest.mark.parametrize("k,s,mode,shape", CASES,
                         ids=[f"k{k}-s{s}-{mode}-{'x'.join(map(str, sh))}" for k, s, mode, sh in CASES])
def test_matches_reference(k, s, mode, shape, nan_poisoned_outputs):
    N, C, H, W = shape
    image, kernel, grad = make_inputs(N, C, H, W, k, s, mode, seed=hash((k, s, mode)) % 2**31)
    check_all(image, kernel, grad, k, s, mode, what=f"k={k} s={s} {mode} {shape}")
    assert len(nan_poisoned_outputs) == 3  # forward, d(image), d(kernel) all came from _empty


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k,s", [(3, 2), (5, 3), (3, 4), (9, 1)])
@pytest.mark.parametrize("H,W", [(1, 1), (1, 6), (3, 1)])
def test_tiny_images(H, W, k, s, mode):
    """1x1, one row and one column: every tap but the centre one reads the zero padding."""
    image, kernel, grad = make_inputs(2, 3, H, W, k, s, mode, seed=H * 10 + W + k * s)
    check_all(image, kernel, grad, k, s, mode, what=f"{H}x{W} k={k} s={s} {mode}")


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs(mode):
    N, C, H, W, k, s = 2, 3, 5, 4, 3, 2
    image, kernel, grad = make_inputs(N, C, H, W, k, s, mode, seed=7)
    image_nc = image.to(memory_format=torch.channels_last)  # NHWC strides
    wide = torch.randn(N, kernel.shape[1], H, 2 * W, device=DEV)
    wide[..., ::2] = kernel
    kernel_nc = wide[..., ::2]  # a strided view
    grad_nc = grad.transpose(2, 3).contiguous().transpose(2, 3)  # transposed strides
    assert not image_nc.is_contiguous() and not kernel_nc.is_contiguous() and not grad_nc.is_contiguous()
    got = check_all(image_nc, kernel_nc, grad_nc, k, s, mode, what=f"non-contiguous {mode}")
    assert got[1].shape == image.shape and got[2].shape == kernel.shape


@pytest.mark.parametrize("mode", MODES)
def test_one_gradient_at_a_time(mode):
    k, s = 3, 2
    image, kernel, grad = make_inputs(1, 3, 3, 4, k, s, mode, seed=11)
    _, ref_dimg, ref_dker = reference_and_grads(image, kernel, grad, k, s, mode)
    img = image.clone().requires_grad_()
    dynamic_conv(img, kernel, kernel_size=k, scale=s, mode=mode, backend="triton").backward(grad)
    assert_close(img.grad, ref_dimg, TOL, "d(image) alone")
    ker = kernel.clone().requires_grad_()
    dynamic_conv(image, ker, kernel_size=k, scale=s, mode=mode, backend="triton").backward(grad)
    assert_close(ker.grad, ref_dker, TOL, "d(kernel) alone")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("N,C,H,W", [(0, 3, 4, 5), (2, 3, 0, 5), (2, 3, 4, 0), (2, 0, 4, 5)])
def test_empty(N, C, H, W, mode, nan_poisoned_outputs):
    k, s = 3, 2
    image, kernel, grad = make_inputs(N, C, H, W, k, s, mode)
    out, dimg, dker = triton_and_grads(image, kernel, grad, k, s, mode)
    assert out.shape == (N, C, H * s, W * s) and dimg.shape == image.shape and dker.shape == kernel.shape
    assert (dimg == 0).all() and (dker == 0).all()  # C = 0, shared: d(kernel) is an empty sum


def test_output_dtype_and_no_double_backward():
    image, kernel, grad = make_inputs(1, 2, 3, 3, 3, 2, "shared")
    image.requires_grad_()
    out = dynamic_conv(image, kernel, kernel_size=3, scale=2, backend="triton")
    assert out.dtype == torch.float32 and out.shape == (1, 2, 6, 6) and out.is_contiguous()
    dimg, = torch.autograd.grad(out, image, grad, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(dimg.sum(), image)


def test_gpu_autotune_configs_and_pruning(monkeypatch):
    """The GPU-side tile choice, checked on any machine: every shape keeps at least one configuration,
    each within its register budget, with BC * rows <= 64; the interpreter gets exactly one."""
    if kdc.interpreting():
        assert len(kdc._configs("BXO")) == len(kdc._configs("BX")) == 1
    monkeypatch.setattr(kdc, "interpreting", lambda: False)
    for per_channel in (False, True):
        for s in (1, 2, 3, 4):
            for C in (1, 3, 16, 64, 100):
                for W in (1, 7, 100, 4000):
                    for block, rows, cols, cap, limits in (("BXO", kdc._p2(s), W * s, (64, 16), (32, 16)),
                                                           ("BX", kdc._p2(s * s), W, (64, 16), (16, 8))):
                        BC = kdc._block_c(C, rows, cap[per_channel])
                        assert 1 <= BC <= kdc._p2(C) and BC * rows <= max(64, rows)
                        configs = kdc._configs(block)
                        prune = kdc._prune(block, "SP" if block == "BXO" else "SSP", limits)["early_config_prune"]
                        meta = {"BC": BC, "SP" if block == "BXO" else "SSP": rows, "S": s, "K": 3,
                                "PER_CHANNEL": per_channel, "ONE_CB": C <= BC}
                        kept = prune(configs, {"W": W, "WB": kdc._width_bucket(cols)}, **meta)
                        assert kept and all(c in configs for c in kept)
                        for c in kept:
                            per_thread = BC * rows * c.kwargs[block] / (32 * c.num_warps)
                            assert per_thread <= limits[per_channel] or len(kept) == 1


# ----------------------------------------------------------------------------------------------
# GPU only


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k,s", [(1, 4), (3, 2), (5, 3), (9, 2)])
@pytest.mark.parametrize("C", [64, 100])
def test_gpu_many_channels_and_larger_maps(C, k, s, mode):
    """C = 64 fills one block in shared mode; 100 crosses blocks (shared d(kernel) loops over them)."""
    image, kernel, grad = make_inputs(2, C, 37, 70, k, s, mode, seed=C + k + s)
    check_all(image, kernel, grad, k, s, mode, what=f"C={C} k={k} s={s} {mode}")


def _error_vs_fp64(image, kernel, grad, k, s, mode, dtype):
    """(triton error, PyTorch error) in `dtype` vs fp64 on the same rounded inputs, per output."""
    image, kernel, grad = (t.to(dtype) for t in (image, kernel, grad))
    ref = reference_and_grads(image, kernel, grad, k, s, mode)
    got = triton_and_grads(image, kernel, grad, k, s, mode)
    img, ker = image.clone().requires_grad_(), kernel.clone().requires_grad_()
    torch_out = dynamic_conv_reference(img, ker, k, s, mode)
    torch_got = (torch_out.detach(), *torch.autograd.grad(torch_out, (img, ker), grad))
    for a in got:
        assert a.dtype == dtype and torch.isfinite(a).all()
    err = lambda a, b: (a.double() - b).abs().max().item()  # noqa: E731
    return [(err(a, r), err(t, r)) for a, t, r in zip(got, torch_got, ref)]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k,s,C", [(3, 2, 3), (5, 4, 16), (7, 1, 64)])
def test_gpu_reduced_precision_within_twice_pytorch_error(k, s, C, mode, dtype):
    image, kernel, grad = make_inputs(2, C, 33, 40, k, s, mode, torch.float32, seed=k * s)
    kernel = kernel / math.sqrt(k * k)  # keep fp16 sums of k*k products (and channel sums) in range
    for name, (err, torch_err) in zip(("out", "d(image)", "d(kernel)"),
                                      _error_vs_fp64(image, kernel, grad, k, s, mode, dtype)):
        assert err <= 2 * torch_err + 1e-6, f"{dtype} {name}: error {err:.3g} vs PyTorch's {torch_err:.3g}"


@gpu
@pytest.mark.gpu
def test_gpu_int64_offsets():
    """An output with more than 2^31 elements: the last rows must land where the reference puts them."""
    k, s, C = 1, 4, 1
    N, H, W = 1, 11600, 11600  # out and kernel: 16 * H * W > 2^31 elements (fp16: 4.3 GB each)
    if torch.cuda.mem_get_info()[0] < 24 * 2**30:
        pytest.skip("needs 24 GiB of free GPU memory")
    assert N * C * H * W * s * s > 2**31
    dt = torch.float16
    image = torch.randn(N, C, H, W, device=DEV, dtype=dt)
    kernel = torch.randn(N, k * k * s * s, H, W, device=DEV, dtype=dt)
    image.requires_grad_()
    kernel.requires_grad_()
    out = dynamic_conv(image, kernel, kernel_size=k, scale=s, backend="triton")
    grad = torch.randn_like(out)
    dimg, dker = torch.autograd.grad(out, (image, kernel), grad)
    rows = slice(H - 3, H)  # k = 1: no halo, a crop of rows is an independent problem
    ref = reference_and_grads(image.detach()[:, :, rows], kernel.detach()[:, :, rows],
                              grad[:, :, (H - 3) * s:], k, s, "shared")
    for name, a, b in zip(("out", "d(image)", "d(kernel)"),
                          (out[:, :, (H - 3) * s:], dimg[:, :, rows], dker[:, :, rows]), ref):
        assert_close(a.float(), b, 2e-3, f"int64 {name}")
