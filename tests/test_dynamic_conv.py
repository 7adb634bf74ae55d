"""fastliif.ops.dynamic_conv (torch and cpu backends) against the reference PixelConv math."""
import itertools

import pytest
import torch

from fastliif import _ext
from fastliif.ops import dynamic_conv
from fastliif.reference.dynamic_conv import PixelConv, dynamic_conv_reference, pixel_conv_reference
from liif_helpers import assert_close_rel, assert_grad_close

HAS_OP = _ext.HAS_EXT and hasattr(torch.ops.fastliif, "dynamic_conv")
BACKENDS = ["torch"] + (["cpu"] if HAS_OP else [])
needs_op = pytest.mark.skipif(not HAS_OP, reason="compiled extension not built")


def inputs(N, C, H, W, k, s, mode, dtype=torch.float32, grad=True):
    kc = k * k * s * s * (C if mode == "per_channel" else 1)
    image = torch.randn(N, C, H, W, dtype=dtype, requires_grad=grad)
    kernel = torch.randn(N, kc, H, W, dtype=dtype, requires_grad=grad)
    return image, kernel


def check(backend, N, C, H, W, k, s, mode, dtype=torch.float32):
    torch.manual_seed(hash((N, C, H, W, k, s, mode)) % 2**31)
    image, kernel = inputs(N, C, H, W, k, s, mode, dtype)
    ref = dynamic_conv_reference(image, kernel, k, s, mode)
    out = dynamic_conv(image, kernel, kernel_size=k, scale=s, mode=mode, backend=backend)
    assert out.shape == (N, C, H * s, W * s)
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    assert_close_rel(out, ref, tol, f"forward {backend}")
    g = torch.randn_like(ref)
    want = torch.autograd.grad(ref, (image, kernel), g)
    got = torch.autograd.grad(out, (image, kernel), g)
    for name, a, b in zip(("image", "kernel"), got, want):
        assert_grad_close(a, b, 1e-6 if dtype == torch.float32 else 1e-13, f"grad {name} {backend}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["shared", "per_channel"])
@pytest.mark.parametrize("k,s", list(itertools.product([1, 3, 5, 7], [1, 2, 3, 4])))
def test_kernel_sizes_and_scales(backend, mode, k, s):
    check(backend, 2, 3, 5, 7, k, s, mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["shared", "per_channel"])
@pytest.mark.parametrize("N,C,H,W", [(1, 1, 1, 1), (2, 16, 1, 9), (1, 64, 6, 4), (3, 3, 9, 2), (2, 1, 4, 4)])
def test_shapes_and_channels(backend, mode, N, C, H, W):
    check(backend, N, C, H, W, 5, 2, mode)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64(backend):
    check(backend, 2, 3, 4, 6, 5, 3, "shared", torch.float64)
    check(backend, 1, 2, 3, 5, 3, 2, "per_channel", torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_the_seed_pixelconv(backend):
    torch.manual_seed(1)
    image, kernel = inputs(2, 3, 8, 6, 5, 2, "shared", grad=False)
    assert_close_rel(dynamic_conv(image, kernel, kernel_size=5, scale=2, backend=backend),
                     PixelConv(scale=2, depthwise=True)(image, kernel), 2e-6, "PixelConv")
    one = torch.randn(2, 1, 8, 6)  # the seed's non-depthwise branch (1 channel) is per_channel
    assert_close_rel(dynamic_conv(one, kernel, kernel_size=5, scale=2, mode="per_channel", backend=backend),
                     pixel_conv_reference(one, kernel, 2, depthwise=False), 2e-6, "non-depthwise")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    torch.manual_seed(2)
    image = torch.randn(2, 6, 7, 5)[:, ::2].transpose(2, 3)  # strided channels, transposed plane
    kernel = torch.randn(2, 9 * 4, 5, 7 * 2)[..., ::2]
    assert not image.is_contiguous() and not kernel.is_contiguous()
    ref = dynamic_conv_reference(image.contiguous(), kernel.contiguous(), 3, 2)
    assert_close_rel(dynamic_conv(image, kernel, kernel_size=3, scale=2, backend=backend), ref, 2e-6, "strided")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["shared", "per_channel"])
def test_gradcheck_float64(backend, mode):
    torch.manual_seed(3)
    image, kernel = inputs(2, 2, 3, 4, 3, 2, mode, torch.float64)
    fn = lambda i, k: dynamic_conv(i, k, kernel_size=3, scale=2, mode=mode, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (image, kernel))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    image, kernel = inputs(0, 3, 4, 4, 3, 2, "shared")
    out = dynamic_conv(image, kernel, kernel_size=3, scale=2, backend=backend)
    assert out.shape == (0, 3, 8, 8)
    out.sum().backward()
    assert image.grad.shape == image.shape and kernel.grad.shape == kernel.shape


@pytest.mark.parametrize("kwargs,shape_change,exc,match", [
    (dict(kernel_size=4), None, ValueError, "kernel_size must be a positive odd"),
    (dict(kernel_size=0), None, ValueError, "kernel_size must be a positive odd"),
    (dict(scale=0), None, ValueError, "scale must be a positive integer"),
    (dict(mode="depthwise"), None, ValueError, "mode must be one of"),
    (dict(), "kernel_channels", ValueError, "needs k\\*k\\*s\\*s = 36"),
    (dict(mode="per_channel"), None, ValueError, "needs C\\*k\\*k\\*s\\*s = 108"),
    (dict(), "kernel_hw", ValueError, "must share batch and spatial size"),
    (dict(), "image_rank", ValueError, "image must be a \\(N, C, H, W\\)"),
    (dict(), "dtype", TypeError, "kernel has dtype torch.float64"),
    (dict(), "device", ValueError, "kernel is on meta"),
    (dict(), "int_image", TypeError, "floating point"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_gives_clear_error(kwargs, shape_change, exc, match, backend):
    image, kernel = inputs(2, 3, 4, 5, 3, 2, "shared", grad=False)
    args = dict(kernel_size=3, scale=2, mode="shared")
    args.update(kwargs)
    if shape_change == "kernel_channels":
        kernel = kernel[:, :35]
    elif shape_change == "kernel_hw":
        kernel = kernel[:, :, :3]
    elif shape_change == "image_rank":
        image = image[0]
    elif shape_change == "dtype":
        kernel = kernel.double()
    elif shape_change == "device":
        kernel = kernel.to("meta")
    elif shape_change == "int_image":
        image, kernel = image.long(), kernel.long()
    with pytest.raises(exc, match=match):
        dynamic_conv(image, kernel, backend=backend, **args)


@needs_op
def test_opcheck():
    torch.manual_seed(4)
    for mode, (k, s) in itertools.product(["shared", "per_channel"], [(3, 1), (5, 2)]):
        image, kernel = inputs(2, 3, 4, 5, k, s, mode)
        torch.library.opcheck(torch.ops.fastliif.dynamic_conv.default, (image, kernel, k, s, mode == "per_channel"))
        g = torch.randn(2, 3, 4 * s, 5 * s)
        torch.library.opcheck(torch.ops.fastliif.dynamic_conv_backward.default,
                              (g, image.detach(), kernel.detach(), k, s, mode == "per_channel"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch.manual_seed(5)
    image, kernel = inputs(2, 3, 6, 5, 5, 2, "shared")
    fn = lambda i, k: dynamic_conv(i, k, kernel_size=5, scale=2, backend=backend)  # noqa: E731
    out = torch.compile(fn, fullgraph=True, backend="aot_eager")(image, kernel)
    eager = fn(image, kernel)
    assert_close_rel(out, eager, 1e-6, "compiled")
    gc = torch.autograd.grad(out.sum(), kernel)[0]
    ge = torch.autograd.grad(eager.sum(), kernel)[0]
    assert_grad_close(gc, ge, 1e-6, "compiled grad")


@pytest.mark.parametrize("mode", ["shared", "per_channel"])
def test_torch_backend_hand_written_backward_gradcheck_and_double_backward(mode):
    torch.manual_seed(11)
    image, kernel = inputs(2, 2, 3, 4, 3, 2, mode, dtype=torch.float64)
    fn = lambda i, k: dynamic_conv(i, k, kernel_size=3, scale=2, mode=mode, backend="torch")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (image, kernel))
    assert torch.autograd.gradgradcheck(fn, (image, kernel))


def test_fastliif_backend_replaces_auto(monkeypatch):
    """FASTLIIF_BACKEND=torch makes backend="auto" run the torch backend; a named backend wins."""
    import importlib
    mod = importlib.import_module("fastliif.ops.dynamic_conv")
    ran = []
    real = mod.dynamic_conv_torch
    monkeypatch.setattr(mod, "dynamic_conv_torch", lambda *a: ran.append("torch") or real(*a))
    image, kernel = inputs(1, 2, 3, 4, 3, 2, "shared", grad=False)
    monkeypatch.setenv("FASTLIIF_BACKEND", "torch")
    out = dynamic_conv(image, kernel, kernel_size=3, scale=2)
    assert ran == ["torch"]
    assert_close_rel(out, dynamic_conv_reference(image, kernel, 3, 2, "shared"), 2e-6, "torch via env")
    if HAS_OP:
        dynamic_conv(image, kernel, kernel_size=3, scale=2, backend="cpu")
        assert ran == ["torch"]
    monkeypatch.setenv("FASTLIIF_BACKEND", "triton-ish")
    with pytest.raises(ValueError, match="FASTLIIF_BACKEND must be one of"):
        dynamic_conv(image, kernel, kernel_size=3, scale=2)
