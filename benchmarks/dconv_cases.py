"""UDVD dynamic-convolution benchmark cases, shared by bench_dynamic_conv.py, report.py and gpu_report.py.

A case builds its inputs once (fixed seed, random values, never zeros) and returns one
zero-argument callable per (implementation, pass), so every tool times exactly the same work:

- "fwd": one call under no_grad;
- "fwdbwd": one call with image and kernel requiring grad, then out.backward(dout) with a fixed
  random dout (= the gradient of the loss sum(out * dout); a random dout, not sum(), so that
  every output position carries a different weight), grads reset to None every round.

Implementations: "reference" is the UDVD seed's PixelConv(scale, depthwise=True) (unfold +
permute copies + batched matmul + pixel_shuffle); every other name is fastliif.ops.dynamic_conv
with that backend.
"""
import torch

from fastliif.ops import dynamic_conv
from fastliif.reference import PixelConv

IMPLS = ("reference", "cpu", "torch")
PASSES = ("fwd", "fwdbwd")
K = 5  # UDVD's kernel size

# name -> (description, params)
CASES = {
    "train_s2": ("UDVD training, N=16, C=3, 64x64, k=5, x2", dict(n=16, c=3, h=64, w=64, scale=2)),
    "train_s4": ("UDVD training, N=16, C=3, 64x64, k=5, x4", dict(n=16, c=3, h=64, w=64, scale=4)),
    "infer_339x510_s4": ("UDVD inference, N=1, C=3, 339x510, k=5, x4", dict(n=1, c=3, h=339, w=510, scale=4)),
    "feat_c64_s1": ("feature maps, N=4, C=64, 64x64, k=5, x1", dict(n=4, c=64, h=64, w=64, scale=1)),
}
# cases whose reference takes a second or more a call on 2 cores: timed in 3 rounds, no warm-up
LARGE_CASES = {"infer_339x510_s4"}
# (case, pass) pairs marked slow in the pytest suite and skipped by report.py --quick
# (reference 2-4 s a call on 2 idle cores, minutes when other processes load the CPU)
SLOW = {("infer_339x510_s4", "fwdbwd")}
# relative tolerance of the correctness check (max abs diff / max abs reference), fp32 vs fp32:
# the op is linear in each input, so there is no branch that rounding could flip
TOL = 1e-5


def run_impl(impl, image, kernel, scale, kernel_size=K):
    if impl == "reference":
        return PixelConv(scale, depthwise=True)(image, kernel)
    return dynamic_conv(image, kernel, kernel_size=kernel_size, scale=scale, backend=impl)


def make_inputs(n, c, h, w, scale, kernel_size=K, device="cpu", dtype=torch.float32, seed=0):
    """image (N, C, H, W), kernel (N, k*k*s*s, H, W) scaled like a softmax-normalised filter, dout."""
    g = torch.Generator().manual_seed(seed)
    taps = kernel_size * kernel_size * scale * scale
    image = torch.randn(n, c, h, w, generator=g)
    kernel = torch.rand(n, taps, h, w, generator=g) / (kernel_size * kernel_size)
    dout = torch.randn(n, c, h * scale, w * scale, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (image, kernel, dout)]


def minimal_bytes(n, c, h, w, scale, kernel_size=K, elem=4):
    """(forward, backward) bytes an ideal kernel moves: each input read once, each output written once."""
    taps = kernel_size * kernel_size * scale * scale
    img, ker, out = n * c * h * w, n * taps * h * w, n * c * h * w * scale * scale
    return elem * (img + ker + out), elem * (out + img + ker + img + ker)


class Case:
    """Inputs of one case and a callable per (implementation, pass)."""

    def __init__(self, name, device="cpu", dtype=torch.float32, seed=0, params=None):
        self.name = name
        self.title, default = CASES.get(name, (name, None))
        self.params = dict(params or default)
        self.scale = self.params["scale"]
        self.image, self.kernel, self.dout = make_inputs(**self.params, device=device, dtype=dtype, seed=seed)
        self.image_g = self.image.clone().requires_grad_()
        self.kernel_g = self.kernel.clone().requires_grad_()
        self._ref = {}  # pass -> reference results, computed on the first check

    def fn(self, impl, pass_):
        if pass_ == "fwd":
            def fwd():
                with torch.no_grad():
                    return run_impl(impl, self.image, self.kernel, self.scale)
            return fwd

        def fwdbwd():
            self.image_g.grad = self.kernel_g.grad = None  # every round does the same work
            out = run_impl(impl, self.image_g, self.kernel_g, self.scale)
            out.backward(self.dout)
            return out
        return fwdbwd

    def snapshot(self, pass_, out):
        """The tensors a call produced: [out] for fwd, [out, d_image, d_kernel] for fwdbwd (copies)."""
        out = out.detach()
        if pass_ == "fwd":
            return [out]
        return [out, self.image_g.grad.clone(), self.kernel_g.grad.clone()]

    def results(self, impl, pass_):
        return self.snapshot(pass_, self.fn(impl, pass_)())

    def set_reference(self, pass_, results):
        """Use these reference results in check() (e.g. saved from a timed round) instead of a new call."""
        self._ref[pass_] = results

    def check(self, impl, pass_, got=None, tol=TOL):
        """Raise unless `impl` matches the reference PixelConv (output, and both grads for fwdbwd).

        `got`: results of `impl` already computed (snapshot()); by default one call is made here.
        """
        if impl == "reference":
            return
        if pass_ not in self._ref:  # the reference can be slow: once per case and pass
            self._ref[pass_] = self.results("reference", pass_)
        if got is None:
            got = self.results(impl, pass_)
        for what, r, g in zip(("out", "d_image", "d_kernel"), self._ref[pass_], got):
            err = ((g.float() - r.float()).abs().max() / r.float().abs().max()).item()
            if not err < tol:
                raise AssertionError(f"{self.name}/{impl}/{pass_}: {what} rel err {err:.2e} >= {tol:.0e}")

    def bytes(self):
        return minimal_bytes(**self.params, elem=self.image.element_size())
