"""Every benchmark case, defined once: `fastliif bench`, the pytest-benchmark suites
(benchmarks/bench_*.py) and the GPU triage all build their work from :data:`CASES`.

A :class:`Case` is the recipe (kind, sizes, which devices run it by default, the Triton issue's
targets that apply to it); :meth:`Case.build` makes an instance with its inputs (fixed seed,
random values, never zeros) whose ``fn(impl)`` returns a zero-argument callable per
implementation, so every tool times exactly the same work. Each callable returns the tensors
to compare with the reference (the output, and the gradients for fwd+bwd).

Implementations: ``"reference"`` is the official code (``query_rgb`` through the official
test's ``batched_predict`` in chunks of 30,000 queries; the UDVD seed's ``PixelConv``; the
``-reference`` models); every other name is a backend of the fused op / model.
"""
import dataclasses

import torch

from ..ops import dynamic_conv, liif_query
from ..reference import MLP, PixelConv, make_cell, make_coord, query_rgb_reference
from . import targets as T

LIIF_C, LIIF_HIDDEN = 64, [256] * 4  # the EDSR-baseline LIIF decoder: 580 -> 256 x4 -> 3
DCONV_K = 5  # UDVD's kernel size
EVAL_BSIZE = 30000  # the official test's batched_predict chunk
SIZES = ("full", "quick", "tiny")
KINDS = ("liif_infer", "liif_train", "dconv_fwd", "dconv_fwdbwd", "train_step")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kind: str
    title: str  # str.format over the parameters (plus H, W: the output size of LIIF cases)
    full: dict
    quick: dict
    tiny: dict
    gpu: dict = None  # full size on CUDA, where it differs (a GPU runs larger problems)
    devices: tuple = ("cpu", "cuda")  # devices that run it by default (others: only when named)
    targets: tuple = ()  # the Triton issue's targets (targets.py), checked on CUDA rows
    cpu_rounds: int = None  # at most this many timed rounds on CPU at full size (slow reference)

    def params(self, device="cpu", size="full"):
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        if size == "full" and torch.device(device).type == "cuda" and self.gpu:
            return dict(self.gpu)
        return dict(getattr(self, size))

    def describe(self, device="cpu", size="full"):
        p = self.params(device, size)
        return self.title.format(**{**p, **_liif_out(p)})

    def precisions(self, device):
        """LIIF cases run at fp32, tf32 and bf16 on CUDA; everything else in fp32."""
        liif = self.kind in ("liif_infer", "liif_train")
        return ("fp32", "tf32", "bf16") if liif and torch.device(device).type == "cuda" else ("fp32",)

    def ops(self):
        """The fused ops a case needs (a backend is offered only when it has all of them)."""
        return {"liif_infer": ("liif_query",), "liif_train": ("liif_query",), "dconv_fwd": ("dynamic_conv",),
                "dconv_fwdbwd": ("dynamic_conv",)}.get(self.kind, ("liif_query", "dynamic_conv"))

    def build(self, device="cpu", size="full", params=None, seed=0):
        p = dict(params) if params is not None else self.params(device, size)
        return BUILDERS[self.kind](p, torch.device(device), seed)


def _liif_out(p):
    """Output size (H, W) of a LIIF inference case: given, or scale * input."""
    if "h" not in p or "s" not in p:
        return {}
    return {"H": p.get("H", round(p["s"] * p["h"])), "W": p.get("W", round(p["s"] * p.get("w", p["h"])))}


# ------------------------------------------------------------------------------------------- LIIF

def _mlp(seed, device):
    torch.manual_seed(seed)
    mlp = MLP(LIIF_C * 9 + 4, 3, LIIF_HIDDEN).to(device)
    with torch.no_grad():  # non-zero biases, so a bias bug cannot hide
        for layer in mlp.layers[0::2]:
            layer.bias.uniform_(-0.1, 0.1)
    return mlp


def _liif(impl, feat, coord, cell, mlp, chunk=None):
    if impl == "reference":
        if chunk is None:
            return query_rgb_reference(feat, coord, cell, mlp)
        return torch.cat([query_rgb_reference(feat, coord[:, i:i + chunk], cell[:, i:i + chunk], mlp)
                          for i in range(0, coord.shape[1], chunk)], dim=1)
    linears = list(mlp.layers)[0::2]
    return liif_query(feat, coord, cell, [m.weight for m in linears], [m.bias for m in linears], backend=impl)


def liif_macs(impl, queries, h, w, corners=4):
    """Multiply-adds of one LIIF query pass of the EDSR-baseline decoder. Reference: the whole
    MLP on the 580-wide input per corner. Fused (DESIGN.md s4): the 3x3 projection once per
    feature pixel, a rank-4 first layer and the hidden layers per corner, the last layer once
    per query."""
    hid, n_hidden, out = LIIF_HIDDEN[0], len(LIIF_HIDDEN) - 1, 3
    if impl == "reference":
        return queries * corners * ((LIIF_C * 9 + 4) * hid + n_hidden * hid * hid + hid * out)
    return h * w * hid * LIIF_C * 9 + queries * corners * (4 * hid + n_hidden * hid * hid) + queries * hid * out


class LiifInfer:
    """LIIF inference from encoder features: every pixel of an (H, W) output in one call."""

    def __init__(self, p, device, seed):
        g = torch.Generator().manual_seed(seed)
        h, w = p["h"], p.get("w", p["h"])
        out = _liif_out(p)
        H, W = out["H"], out["W"]
        self.h, self.w, self.q = h, w, H * W
        self.mlp = _mlp(seed, device)
        self.feat = torch.randn(1, LIIF_C, h, w, generator=g).to(device)
        self.coord = make_coord((H, W)).unsqueeze(0).to(device)
        self.cell = make_cell(self.coord, (H, W))

    def fn(self, impl):
        def call():
            with torch.no_grad():
                return [_liif(impl, self.feat, self.coord, self.cell, self.mlp, chunk=EVAL_BSIZE)]
        return call

    def work(self, impl):
        return {"flops": 2 * liif_macs(impl, self.q, self.h, self.w), "bytes": None}


class LiifTrain:
    """LIIF training step of the query alone: forward, L1 loss, backward to the features and the
    decoder's parameters (the encoder is not part of it; see the train_step cases)."""

    def __init__(self, p, device, seed):
        g = torch.Generator().manual_seed(seed)
        b, h, q = p["b"], p["h"], p["q"]
        self.h, self.q = h, b * q
        self.mlp = _mlp(seed, device)
        self.feat = torch.randn(b, LIIF_C, h, h, generator=g).to(device).requires_grad_()
        self.coord = (torch.rand(b, q, 2, generator=g) * 2 - 1).to(device)
        self.cell = torch.full((b, q, 2), 2 / (4 * h), device=device)
        self.gt = (torch.rand(b, q, 3, generator=g) * 2 - 1).to(device)
        self.grads = [self.feat, *self.mlp.parameters()]
        self.batch = b

    def fn(self, impl):
        def call():
            for t in self.grads:  # fresh gradients every round: every round does the same work
                t.grad = None
            out = _liif(impl, self.feat, self.coord, self.cell, self.mlp)
            (out.float() - self.gt).abs().mean().backward()
            # the output only: a pre-activation within rounding of 0 flips a ReLU (and a residual
            # near 0 the L1 sign), so fp32 gradients differ from the reference's by ~1e-3 anyway
            return [out.detach()]
        return call

    def work(self, impl):
        # forward + backward ~ 3 forward passes of useful work (the fused recompute is not credited)
        return {"flops": 3 * 2 * liif_macs(impl, self.q, self.h, self.h), "bytes": None}


# ---------------------------------------------------------------------------------- dynamic_conv

class DynamicConv:
    """UDVD's dynamic convolution (shared kernel, zero padding). fwd: one call under no_grad;
    fwdbwd: image and kernel require grad, then out.backward(dout) with a fixed random dout
    (every output position weighted differently)."""

    def __init__(self, p, device, seed, backward):
        g = torch.Generator().manual_seed(seed)
        n, c, h, w, s = p["n"], p.get("c", 3), p["h"], p.get("w", p["h"]), p["s"]
        taps = DCONV_K * DCONV_K * s * s
        self.n, self.c, self.h, self.w, self.s, self.backward = n, c, h, w, s, backward
        self.image = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_(backward)
        # scaled like a softmax-normalised filter
        self.kernel = (torch.rand(n, taps, h, w, generator=g) / DCONV_K ** 2).to(device).requires_grad_(backward)
        self.dout = torch.randn(n, c, h * s, w * s, generator=g).to(device)

    def _run(self, impl):
        if impl == "reference":
            return PixelConv(self.s, depthwise=True)(self.image, self.kernel)
        return dynamic_conv(self.image, self.kernel, kernel_size=DCONV_K, scale=self.s, backend=impl)

    def fn(self, impl):
        if not self.backward:
            def call():
                with torch.no_grad():
                    return [self._run(impl)]
            return call

        def call():
            self.image.grad = self.kernel.grad = None
            out = self._run(impl)
            out.backward(self.dout)
            return [out.detach(), self.image.grad, self.kernel.grad]
        return call

    def work(self, impl):
        """Minimal bytes (each input read once, each output written once) and multiply-adds x2."""
        e = self.image.element_size()
        img, ker = self.n * self.c * self.h * self.w, self.kernel.numel()
        out = img * self.s * self.s
        fwd = e * (img + ker + out)
        flops = 2 * out * DCONV_K * DCONV_K
        if not self.backward:
            return {"flops": flops, "bytes": fwd}
        return {"flops": 3 * flops, "bytes": fwd + e * (out + img + ker + img + ker)}


# -------------------------------------------------------------------------- whole training steps

STEP_MODELS = {
    "liif": ({"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": LIIF_HIDDEN}}}},
        {"name": "l1"}),
    "udvd": ({"name": "udvd"}, {"name": "multistage", "args": {"base": "l1"}}),
}


class TrainStep:
    """One whole training step of the trainer's own pieces (forward, loss, backward, Adam) on a
    random batch made once; the reference model and the fused one start from the same weights."""

    def __init__(self, p, device, seed):
        from ..train.loop import build_model, make_optimizer
        from ..train.losses import make_loss
        from ..train.tasks import DataNorm, forward

        self.task, b, h = p["task"], p["b"], p["h"]
        self._build, self._opt, self._forward = build_model, make_optimizer, forward
        model_spec, loss_spec = STEP_MODELS[self.task]
        self.model_spec, self.loss_fn = model_spec, make_loss(loss_spec)
        self.norm = DataNorm(None, device)
        self.device, self.seed = device, seed
        g = torch.Generator().manual_seed(seed)
        if self.task == "liif":
            q = p["q"]
            batch = {"inp": torch.rand(b, 3, h, h, generator=g), "coord": torch.rand(b, q, 2, generator=g) * 2 - 1,
                     "cell": torch.full((b, q, 2), 2 / (4 * h)), "gt": torch.rand(b, q, 3, generator=g)}
        else:
            s = p.get("s", 2)
            batch = {"inp": torch.rand(b, 3, h, h, generator=g), "kernel": torch.rand(b, 15, h, h, generator=g),
                     "noise": torch.rand(b, 1, h, h, generator=g) * 0.1,
                     "gt": torch.rand(b, 3, s * h, s * h, generator=g)}
        self.batch = {k: v.to(device) for k, v in batch.items()}
        self.models, self.init = {}, None

    def _model(self, impl):
        if impl not in self.models:
            torch.manual_seed(self.seed)
            model = self._build(self.model_spec, impl).to(self.device)
            if self.init is None:  # every implementation starts from the first one's initial weights
                self.init = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(self.init)
            self.models[impl] = (model, self._opt(model.parameters(), {"name": "adam", "args": {"lr": 1e-4}}))
        return self.models[impl]

    def fn(self, impl):
        model, opt = self._model(impl)

        def call():
            pred, target, _ = self._forward(self.task, model, self.batch, self.norm)
            loss = self.loss_fn(list(pred) if isinstance(pred, tuple) else pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return [loss.detach()]
        return call

    def work(self, impl):
        return {"flops": None, "bytes": None}


BUILDERS = {
    "liif_infer": LiifInfer,
    "liif_train": LiifTrain,
    "dconv_fwd": lambda p, d, s: DynamicConv(p, d, s, backward=False),
    "dconv_fwdbwd": lambda p, d, s: DynamicConv(p, d, s, backward=True),
    "train_step": TrainStep,
}

# ------------------------------------------------------------------------------------ the cases

_FAST = (T.SPEEDUP_4X, T.TF32_12X, T.BF16_PEAK_40)
_DIV2K = dict(H=1356, W=2040)  # a DIV2K-sized output
_DCONV = (T.DCONV_5X, T.DCONV_COPY_60)


def _dconv(name, what, full, cpu_default=True, cpu_rounds=None):
    title = what + ", N={n} C={c} {h}x{w} k=5 x{s}"
    tiny = dict(n=1, c=full.get("c", 3), h=4, w=5, s=full["s"])
    quick = dict(full, n=min(full["n"], 4), h=min(full["h"], 32), w=min(full["w"], 32))
    devices = ("cpu", "cuda") if cpu_default else ("cuda",)
    return [Case(f"{name}_{p}", f"dconv_{p}", f"dynamic_conv {p.replace('bwd', '+bwd')}, " + title, full, quick,
                 tiny, devices=devices, targets=_DCONV, cpu_rounds=cpu_rounds) for p in ("fwd", "fwdbwd")]


_CASE_LIST = [
    Case("liif_infer_small", "liif_infer", "LIIF inference x{s}, {h}x{h} -> {H}x{W}",
         dict(h=48, s=4), dict(h=12, s=4), dict(h=4, s=2), targets=_FAST),
    Case("liif_infer_large", "liif_infer", "LIIF inference x{s}, {h}x{h} -> {H}x{W}, one call",
         dict(h=128, s=4), dict(h=24, s=4), dict(h=5, s=3), targets=_FAST, cpu_rounds=3),
    *[Case(f"liif_div2k_x{s}", "liif_infer", "LIIF inference x{s}, {h}x{w} -> {H}x{W}, one call",
           dict(h=round(1356 / s), w=round(2040 / s), s=s, **_DIV2K),
           dict(h=round(136 / s), w=round(204 / s), s=s, H=136, W=204),
           dict(h=3, w=4, s=s, H=3 * s, W=4 * s), devices=("cuda",), targets=_FAST)
      for s in (2, 4, 8, 12)],
    Case("liif_4k_x4", "liif_infer", "LIIF inference x{s}, {w}x{h} -> {W}x{H} (4K), one call",
         dict(h=540, w=960, s=4), dict(h=54, w=96, s=4), dict(h=3, w=5, s=4), devices=("cuda",),
         targets=_FAST + (T.MEMORY_2GB,)),
    Case("liif_train", "liif_train", "LIIF query training step, B={b}, {h}x{h}, sample_q={q}",
         dict(b=4, h=48, q=2304), dict(b=2, h=16, q=576), dict(b=1, h=4, q=16), gpu=dict(b=16, h=48, q=2304),
         targets=(T.TRAIN_2X, T.TRAIN_MEMORY_5X)),
    *_dconv("dconv", "UDVD training", dict(n=16, c=3, h=64, w=64, s=4)),
    *_dconv("dconv_x2", "UDVD training", dict(n=16, c=3, h=64, w=64, s=2), cpu_default=False),
    *_dconv("dconv_infer", "UDVD inference", dict(n=1, c=3, h=339, w=510, s=4), cpu_default=False, cpu_rounds=3),
    *_dconv("dconv_feat", "feature maps", dict(n=4, c=64, h=64, w=64, s=1), cpu_default=False),
    Case("step_liif", "train_step", "LIIF-EDSR-baseline whole training step, B={b}, {h}x{h} LR, sample_q {q}",
         dict(task="liif", b=4, h=48, q=2304), dict(task="liif", b=1, h=24, q=576),
         dict(task="liif", b=1, h=8, q=16), gpu=dict(task="liif", b=16, h=48, q=2304)),
    Case("step_udvd", "train_step", "UDVD x2 whole training step, B={b}, {h}x{h} LR, multistage L1",
         dict(task="udvd", b=4, h=48), dict(task="udvd", b=1, h=24), dict(task="udvd", b=1, h=8),
         gpu=dict(task="udvd", b=16, h=48)),
]
CASES = {c.name: c for c in _CASE_LIST}


def default_cases(device):
    return [c.name for c in _CASE_LIST if torch.device(device).type in c.devices]


def select(patterns):
    """Case names matching a list of names / shell patterns ("dconv_*") / "all"; raises
    ValueError naming the valid cases when a pattern matches none."""
    import fnmatch

    names = []
    for pat in patterns:
        hit = list(CASES) if pat == "all" else fnmatch.filter(CASES, pat)
        if not hit:
            raise ValueError(f"unknown case {pat!r}; valid: {', '.join(CASES)} (or 'all', or a pattern like "
                             f"'dconv_*')")
        names += [n for n in hit if n not in names]
    return names
