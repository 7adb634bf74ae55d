"""LIIF query benchmark cases, shared by bench_liif_query.py, peak_memory.py and report.py.

A case builds its inputs once (fixed seed, random values, never zeros) and returns one
zero-argument callable per implementation, so every tool times exactly the same work.
"""
import copy

import torch

from fastliif.ops import liif_query
from fastliif.reference import MLP, make_cell, make_coord, query_rgb_reference

IMPLS = ("reference", "cpu", "torch")
HIDDEN = [256] * 4  # EDSR-baseline LIIF decoder: 580 -> 256 x4 -> 3
C = 64

# name -> (description, kind, params)
CASES = {
    "infer_48_to_192": ("inference x4, 48x48 -> 192x192 (Q=36,864)", "infer", dict(h=48, scale=4)),
    "infer_128_to_512": ("inference x4, 128x128 -> 512x512 (Q=262,144)", "infer", dict(h=128, scale=4)),
    "train_b4_48": ("training step, B=4, 48x48, 2,304 queries/img", "train", dict(b=4, h=48, q=2304, scale=4)),
}
SLOW_CASES = {"infer_128_to_512"}
# the large case checks every 8th query: the same kernel on 32,768 queries, 8x less oracle time
CHECK_STRIDE = {"infer_128_to_512": 8}
# relative tolerance of the correctness check (max abs diff / max abs reference)
TOL = 1e-5


def make_mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(C * 9 + 4, 3, HIDDEN)


def linears(mlp):
    layers = list(mlp.layers)[0::2]
    return [m.weight for m in layers], [m.bias for m in layers]


def run_impl(impl, feat, coord, cell, mlp):
    """One query with the given implementation (grad mode is the caller's)."""
    if impl == "reference":
        return query_rgb_reference(feat, coord, cell, mlp)
    weights, biases = linears(mlp)
    return liif_query(feat, coord, cell, weights, biases, backend=impl)


def infer_inputs(h, scale, seed=0):
    torch.manual_seed(seed + 1)
    feat = torch.randn(1, C, h, h)
    H = h * scale
    coord = make_coord((H, H)).unsqueeze(0)
    cell = make_cell(coord, (H, H))
    return feat, coord, cell


def train_inputs(b, h, q, scale, seed=0):
    """LIIF training batch: random query points inside each image, cell of an x`scale` output."""
    torch.manual_seed(seed + 2)
    feat = torch.randn(b, C, h, h, requires_grad=True)
    coord = torch.rand(b, q, 2) * 2 - 1
    cell = torch.full((b, q, 2), 2 / (h * scale))
    gt = torch.rand(b, q, 3) * 2 - 1
    return feat, coord, cell, gt


class Case:
    """Inputs of one case and a callable per implementation."""

    def __init__(self, name, seed=0):
        self.name = name
        self.title, self.kind, params = CASES[name]
        self.mlp = make_mlp(seed)
        self._ref = None  # reference results, computed on the first check
        if self.kind == "infer":
            self.feat, self.coord, self.cell = infer_inputs(**params, seed=seed)
            self.gt = None
        else:
            self.feat, self.coord, self.cell, self.gt = train_inputs(**params, seed=seed)

    def fn(self, impl):
        if self.kind == "infer":
            def infer():
                with torch.no_grad():
                    return run_impl(impl, self.feat, self.coord, self.cell, self.mlp)
            return infer

        params = [self.feat, *self.mlp.parameters()]

        def step():
            for p in params:  # fresh gradients each round, so every round does the same work
                p.grad = None
            out = run_impl(impl, self.feat, self.coord, self.cell, self.mlp)
            loss = (out - self.gt).abs().mean()
            loss.backward()
            return out
        return step

    def check(self, impl):
        """Raise unless `impl` matches the reference (the oracle itself is not checked).

        Inference: the fp32 output (every CHECK_STRIDE-th query). Training: the fp32 output, then every gradient in float64. fp32 gradients are
        not comparable at 1e-5: a pre-activation within rounding of 0 flips a ReLU (and a
        residual near 0 flips the L1 sign), so even the fp32 reference is ~1e-3 off float64.
        """
        if impl == "reference":
            return
        if self._ref is None:  # the oracle is slow: compute it once per case
            self._ref = self._results("reference")
        got = self._results(impl)
        pairs = zip(self._ref, got)
        for i, (r, g) in enumerate(pairs):
            err = ((g - r).abs().max() / r.abs().max()).item()
            if not err < TOL:
                raise AssertionError(f"{self.name}/{impl}: tensor {i} rel err {err:.2e} >= {TOL:.0e}")

    def _results(self, impl):
        if self.kind == "infer":
            stride = CHECK_STRIDE.get(self.name, 1)
            coord, cell = self.coord[:, ::stride], self.cell[:, ::stride]
            with torch.no_grad():
                return [run_impl(impl, self.feat, coord, cell, self.mlp)]
        return [self.fn(impl)().detach()] + self._grads64(impl)

    def _grads64(self, impl, queries=512):
        # one image and a slice of its queries exercise every code path; float64 is slow
        mlp = copy.deepcopy(self.mlp).double()
        feat = self.feat.detach()[:1].double().requires_grad_()
        q = (slice(0, 1), slice(0, queries))
        out = run_impl(impl, feat, self.coord[q].double(), self.cell[q].double(), mlp)
        (out - self.gt[q].double()).abs().mean().backward()
        return [feat.grad] + [p.grad for p in mlp.parameters()]
