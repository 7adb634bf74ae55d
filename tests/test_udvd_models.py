"""UDVD: the reference model (seed structure), the fused drop-in, and fastliif.swap on PixelConv."""
import copy
import importlib

import pytest
import torch
import torch.nn as nn

import fastliif
from fastliif import _ext, models
from fastliif.reference import pixel_conv_reference
from fastliif.reference import udvd as ref_udvd

FUSED_MODULE = importlib.import_module("fastliif.nn.udvd")


def cpu_op_available():
    return _ext.HAS_EXT and hasattr(torch.ops.fastliif, "dynamic_conv")


CPU_SKIP = pytest.mark.skipif(not cpu_op_available(),
                              reason="torch.ops.fastliif.dynamic_conv is not in the compiled extension (yet)")
BACKENDS = ["torch", pytest.param("cpu", marks=CPU_SKIP)]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def conv_params(cin, cout, k):
    """Weights + bias of a Conv2d(cin, cout, k)."""
    return cin * cout * k * k + cout


def make_pair(seed=0, dtype=torch.float64, backend="torch"):
    """(reference UDVD, fused UDVD with the same weights)."""
    torch.manual_seed(seed)
    ref = fastliif.reference.UDVD().to(dtype)
    fused = fastliif.nn.UDVD(backend=backend).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def udvd_inputs(seed, n=2, h=8, w=6, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, h, w, generator=g, dtype=dtype)
    kernel = torch.randn(n, 15, h, w, generator=g, dtype=dtype)
    noise = torch.rand(n, 1, h, w, generator=g, dtype=dtype) * 0.1
    return [t.requires_grad_(requires_grad) for t in (image, kernel, noise)]


def run_with_grads(model, inputs, seed):
    """The three outputs and the gradients of every parameter and input for a random linear loss."""
    model.zero_grad(set_to_none=True)
    for t in inputs:
        t.grad = None
    outs = model(*inputs)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    for name, t in zip(("image", "kernel", "noise"), inputs):
        grads["input." + name] = t.grad.detach().clone()
    return [o.detach().clone() for o in outs], grads


def max_rel(a, b):
    """max |a - b| relative to max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def rel_l2(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_same(got, expected, metric, tol):
    outs_g, grads_g = got
    outs_e, grads_e = expected
    assert len(outs_g) == len(outs_e) == 3
    for i, (a, b) in enumerate(zip(outs_g, outs_e)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert metric(a, b) <= tol, f"output{i + 1}: {metric(a, b):.3g} > {tol}"
    assert grads_g.keys() == grads_e.keys()
    worst = max(grads_e, key=lambda k: metric(grads_g[k], grads_e[k]))
    assert metric(grads_g[worst], grads_e[worst]) <= tol, f"grad {worst}: {metric(grads_g[worst], grads_e[worst]):.3g}"


# ----------------------------------------------------------------------------- structure

def test_parameter_count_by_hand():
    head = conv_params(3 + 15 + 1, 128, 3)  # 22,016
    resblock = 2 * conv_params(128, 128, 3)  # 295,168
    body = 15 * resblock
    image_conv = conv_params(3, 16, 3) + conv_params(16, 16, 3) + conv_params(16, 32, 3)  # 7,408
    up = (image_conv
          + conv_params(160, 64, 3) + conv_params(64 // 4, 3, 3)  # feat_residual (PixelShuffle between)
          + conv_params(160, 25 * 4, 3))  # feat_kernel: 5x5 taps x 4 sub-pixels
    common = (image_conv
              + conv_params(128 // 4, 128, 1)  # feat_conv after PixelShuffle(2)
              + conv_params(160, 16, 3) + conv_params(16, 3, 3)  # feat_residual
              + conv_params(160, 25, 3))  # feat_kernel
    expected = head + body + up + 2 * common
    assert expected == 4_835_999
    torch.manual_seed(0)
    ref, fused = fastliif.reference.UDVD(), fastliif.nn.UDVD()
    assert n_params(ref) == n_params(fused) == expected
    assert n_params(ref.UpDyConv) == up and n_params(ref.ComDyConv1) == n_params(ref.ComDyConv2) == common
    assert n_params(ref.body[0]) == resblock and len(ref.body) == 15


def test_state_dict_keys_and_loading_both_ways():
    torch.manual_seed(0)
    ref = fastliif.reference.UDVD()
    torch.manual_seed(0)
    fused = fastliif.nn.UDVD()
    sd_ref, sd_fused = ref.state_dict(), fused.state_dict()
    assert list(sd_ref) == list(sd_fused)
    # seed attribute names
    for key in ("head.weight", "body.14.conv.2.bias", "UpDyConv.image_conv.4.weight", "UpDyConv.feat_residual.3.weight",
                "UpDyConv.feat_kernel.weight", "ComDyConv1.feat_conv.1.weight", "ComDyConv2.feat_residual.2.bias",
                "ComDyConv2.feat_kernel.bias"):
        assert key in sd_ref
    assert not any("pixel_conv" in k for k in sd_ref)
    # the fused model draws the same random initialisation for a given seed
    assert all(torch.equal(sd_ref[k], sd_fused[k]) for k in sd_ref)
    torch.manual_seed(1)
    other = fastliif.nn.UDVD()
    ref.load_state_dict(other.state_dict())
    other.load_state_dict(fastliif.reference.UDVD().state_dict())


def test_classes_and_registry():
    fused = models.make({"name": "udvd", "args": {"backend": "torch"}})
    ref = models.make("udvd-reference")
    assert isinstance(fused, fastliif.nn.UDVD) and isinstance(fused, fastliif.reference.UDVD)
    assert type(ref) is fastliif.reference.UDVD
    assert fused.backend == "torch"
    assert isinstance(fused.UpDyConv, fastliif.nn.UpDynamicConv)
    assert isinstance(fused.ComDyConv1, fastliif.nn.CommonDynamicConv)
    for stage, scale in ((fused.UpDyConv, 2), (fused.ComDyConv1, 1), (fused.ComDyConv2, 1)):
        assert isinstance(stage.pixel_conv, fastliif.nn.PixelConv)
        assert (stage.pixel_conv.scale, stage.pixel_conv.depthwise, stage.pixel_conv.backend) == (scale, True, "torch")
    for stage, scale in ((ref.UpDyConv, 2), (ref.ComDyConv1, 1), (ref.ComDyConv2, 1)):
        assert type(stage.pixel_conv) is fastliif.reference.PixelConv
        assert (stage.pixel_conv.scale, stage.pixel_conv.depthwise) == (scale, True)
    fused.backend = "auto"
    assert {m.backend for m in fused.modules() if isinstance(m, fastliif.nn.PixelConv)} == {"auto"}
    res = ref_udvd.ResBlock(4, 3, 0.5)
    assert isinstance(res.conv, nn.Sequential) and len(res.conv) == 3
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(res(x), x + res.conv(x) * 0.5)


@pytest.mark.parametrize("n,h,w", [(2, 8, 6), (1, 13, 9), (1, 1, 1)])
def test_output_shapes(n, h, w):
    ref, fused = make_pair(0, torch.float32)
    with torch.no_grad():
        for model in (ref, fused):
            outs = model(*udvd_inputs(1, n, h, w, torch.float32))
            assert isinstance(outs, tuple) and len(outs) == 3
            assert [tuple(o.shape) for o in outs] == [(n, 3, 2 * h, 2 * w)] * 3


# ----------------------------------------------------------------------------- fused == reference

@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_matches_reference_float64(backend):
    ref, fused = make_pair(3, torch.float64, backend)
    inputs = udvd_inputs(4, 2, 6, 5, torch.float64, requires_grad=True)
    expected = run_with_grads(ref, inputs, seed=5)
    got = run_with_grads(fused, inputs, seed=5)
    assert_same(got, expected, max_rel, 1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_matches_reference_float32(backend):
    ref, fused = make_pair(6, torch.float32, backend)
    inputs = udvd_inputs(7, 1, 13, 9, torch.float32, requires_grad=True)
    expected = run_with_grads(ref, inputs, seed=8)
    got = run_with_grads(fused, inputs, seed=8)
    assert_same(got, expected, rel_l2, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale,k,c,depthwise", [(2, 5, 3, True), (1, 5, 3, True), (3, 3, 2, True), (1, 3, 1, False),
                                                 (2, 3, 1, False), (2, 1, 4, True)])
def test_pixel_conv_module_matches_reference(backend, scale, k, c, depthwise):
    g = torch.Generator().manual_seed(scale * 100 + k * 10 + c)
    feature = torch.randn(2, c, 7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, k * k * scale * scale, 7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ref = fastliif.reference.PixelConv(scale, depthwise)
    fused = fastliif.nn.PixelConv(scale, depthwise, backend=backend)
    outs = []
    for module in (ref, fused):
        feature.grad = kernel.grad = None
        out = module(feature, kernel)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out))
        outs.append((out.detach(), feature.grad.clone(), kernel.grad.clone()))
    assert outs[0][0].shape == (2, c, 7 * scale, 5 * scale)
    for a, b in zip(outs[1], outs[0]):
        assert max_rel(a, b) <= 1e-12


# ----------------------------------------------------------------------------- swap

def test_swap_reference_udvd():
    torch.manual_seed(9)
    model = fastliif.reference.UDVD().double()
    params = [p for p in model.parameters()]
    keys = list(model.state_dict())
    inputs = udvd_inputs(10, 1, 8, 6, torch.float64, requires_grad=True)
    before = run_with_grads(model, inputs, seed=11)
    names = fastliif.swap(model, backend="torch")
    assert names == ["UpDyConv.pixel_conv", "ComDyConv1.pixel_conv", "ComDyConv2.pixel_conv"]
    assert fastliif.swap(model, backend="torch") == []  # already swapped
    for name in names:
        assert "forward" in model.get_submodule(name).__dict__
    assert [p for p in model.parameters()] == params and list(model.state_dict()) == keys
    swapped = run_with_grads(model, inputs, seed=11)
    assert_same(swapped, before, max_rel, 1e-10)
    assert sorted(fastliif.unswap(model)) == sorted(names)
    for name in names:
        assert "forward" not in model.get_submodule(name).__dict__
    restored = run_with_grads(model, inputs, seed=11)
    assert_same(restored, before, max_rel, 0.0)  # the reference path again, bit for bit


def test_swap_skips_fused_udvd():
    torch.manual_seed(0)
    assert fastliif.swap(fastliif.nn.UDVD(backend="torch")) == []


# An independently written per-pixel filter module with the seed's PixelConv structure.
class MyDynamicFilter(nn.Module):
    def __init__(self, scale, depthwise=True):
        super().__init__()
        self.scale = scale
        self.depthwise = depthwise

    def forward(self, x, filters):
        return pixel_conv_reference(x, filters, self.scale, self.depthwise)


class FilterNet(nn.Module):
    """Predicts per-pixel filters from the image and applies them (parameters sit outside the filter)."""

    def __init__(self, scale=2, k=3, c=3):
        super().__init__()
        self.predict = nn.Conv2d(c, k * k * scale * scale, 3, padding=1)
        self.apply_filter = MyDynamicFilter(scale)
        self.gray = nn.Sequential(nn.Conv2d(c, 1, 1), MyDynamicFilter(1, depthwise=False))
        self.predict_gray = nn.Conv2d(c, k * k, 3, padding=1)

    def forward(self, x):
        up = self.apply_filter(x, self.predict(x))
        gray = self.gray[1](self.gray[0](x), self.predict_gray(x))
        return up, gray


@pytest.fixture
def count_fused(monkeypatch):
    calls = []
    original = FUSED_MODULE.dynamic_conv

    def counting(*args, **kwargs):
        calls.append((kwargs.get("kernel_size"), kwargs.get("scale"), kwargs.get("mode"), kwargs.get("backend")))
        return original(*args, **kwargs)

    monkeypatch.setattr(FUSED_MODULE, "dynamic_conv", counting)
    return calls


def test_swap_independent_pixel_conv_calls_fused_op(count_fused):
    torch.manual_seed(12)
    model = FilterNet(scale=2, k=3, c=3).double()
    x = torch.rand(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)

    def run():
        model.zero_grad(set_to_none=True)
        x.grad = None
        up, gray = model(x)
        weights = torch.linspace(-1, 1, gray.numel(), dtype=gray.dtype).view_as(gray)
        (up.pow(2).sum() + (gray * weights).sum()).backward()
        grads = [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]
        return [up.detach(), gray.detach()], grads

    expected = run()
    assert count_fused == []
    names = fastliif.swap(model, backend="torch")
    assert names == ["apply_filter", "gray.1"]
    got = run()
    assert sorted(count_fused) == sorted([(3, 2, "shared", "torch"), (3, 1, "per_channel", "torch")])
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert max_rel(a, b) <= 1e-10
    assert fastliif.unswap(model) == names
    count_fused.clear()
    restored = run()
    assert count_fused == []
    for a, b in zip(restored[0], expected[0]):
        assert torch.equal(a, b)


def test_swap_keeps_backend_and_deepcopy(count_fused):
    model = FilterNet()
    fastliif.swap(model, backend="torch")
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone(torch.rand(1, 3, 4, 4))
    assert len(count_fused) == 2 and {c[3] for c in count_fused} == {"torch"}
    assert fastliif.unswap(clone) == ["apply_filter", "gray.1"]


def test_swap_ignores_lookalikes():
    class WithParams(MyDynamicFilter):
        def __init__(self):
            super().__init__(2)
            self.w = nn.Parameter(torch.ones(1))

    class OneInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale, self.depthwise = 2, True

        def forward(self, x):
            return x

    class BoolScale(MyDynamicFilter):
        def __init__(self):
            super().__init__(True)

    class NoDepthwise(MyDynamicFilter):
        def __init__(self):
            super().__init__(2)
            self.depthwise = 1

    model = nn.ModuleList([WithParams(), OneInput(), BoolScale(), NoDepthwise(), nn.PixelShuffle(2), nn.Conv2d(1, 1, 1),
                           MyDynamicFilter(3)])
    assert fastliif.swap(model, backend="torch") == ["6"]


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("model_cls", [fastliif.reference.UDVD, fastliif.nn.UDVD])
def test_udvd_input_errors(model_cls):
    torch.manual_seed(0)
    model = model_cls()
    image, kernel, noise = udvd_inputs(0, 1, 4, 4, torch.float32)
    with pytest.raises(ValueError, match="channels of image should be 3, not 4"):
        model(torch.cat([image, noise], 1), kernel, noise)
    with pytest.raises(ValueError, match="channels of kernel should be 15, not 14"):
        model(image, kernel[:, :14], noise)
    with pytest.raises(ValueError, match="channels of noise should be 1, not 2"):
        model(image, kernel, torch.cat([noise, noise], 1))
    with pytest.raises(ValueError, match="kernel .* must share batch and spatial size"):
        model(image, kernel[:, :, :3], noise)
    with pytest.raises(ValueError, match="noise .* must share batch and spatial size"):
        model(image, kernel, torch.cat([noise, noise]))
    with pytest.raises(ValueError, match="image must be a"):
        model(image[0], kernel, noise)


@pytest.mark.parametrize("cls", [fastliif.reference.PixelConv, fastliif.nn.PixelConv])
def test_pixel_conv_errors(cls):
    feature = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="1-channel features only, got 3"):
        cls(scale=2, depthwise=False)(feature, torch.randn(1, 3 * 25 * 4, 4, 4))
    with pytest.raises(ValueError, match="kernel has 24 channels"):
        cls(scale=2, depthwise=True)(feature, torch.randn(1, 24, 4, 4))
    with pytest.raises(ValueError, match="kernel has 26 channels"):
        cls(scale=1, depthwise=True)(feature, torch.randn(1, 26, 4, 4))
    with pytest.raises(ValueError, match="kernel has 40 channels"):
        cls(scale=2, depthwise=False)(feature[:, :1], torch.randn(1, 40, 4, 4))
    with pytest.raises(ValueError, match="share batch and spatial size"):
        cls(scale=1, depthwise=True)(feature, torch.randn(1, 9, 4, 3))


def test_fused_pixel_conv_even_kernel_error():
    with pytest.raises(ValueError, match="kernel has 16 channels, not k\\*k\\*s\\*s with an odd k"):
        fastliif.nn.PixelConv(scale=1, depthwise=True)(torch.randn(1, 3, 4, 4), torch.randn(1, 16, 4, 4))
