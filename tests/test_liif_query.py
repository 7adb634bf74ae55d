"""fastliif.ops.liif_query against the reference query_rgb (official LIIF semantics)."""
import itertools

import pytest
import torch

import fastliif
from fastliif import _ext
from fastliif.ops import liif_query
from fastliif.reference import make_cell, make_coord, query_rgb_reference
from liif_helpers import (FLAGS, assert_close_rel, assert_grad_close, make_mlp, params, random_queries,
                          run_both)

BACKENDS = ["torch"] + (["cpu"] if _ext.HAS_EXT else [])
needs_ext = pytest.mark.skipif(not _ext.HAS_EXT, reason="compiled extension not built")


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q", [(1, 3, 1, 1, 37), (2, 5, 3, 5, 301), (3, 4, 7, 4, 129), (2, 8, 6, 6, 1)])
def test_forward_matches_reference(backend, flags, B, C, h, w, Q):
    torch.manual_seed(hash((B, C, h, w, Q, flags)) % 2**31)
    feat = torch.randn(B, C, h, w)
    coord, cell = random_queries(B, Q, torch.float32, -1.2, 1.2, h=h)
    mlp = make_mlp(C, [24, 20, 16], flags)
    out, ref = run_both(feat, coord, cell, mlp, flags, backend)
    assert_close_rel(out, ref, 5e-6, f"{backend} {flags}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [0.5, 1.0, 1.7, 2.0, 3.0, 4.0, 12.0, 30.0])
@pytest.mark.parametrize("local_ensemble", [True, False])
def test_forward_output_grids_at_scales(backend, scale, local_ensemble):
    """Whole output grids as LIIF queries them: centres land on cell borders at some scales."""
    torch.manual_seed(int(scale * 10))
    h, w = 6, 5
    H, W = max(1, round(h * scale)), max(1, round(w * scale))
    feat = torch.randn(2, 4, h, w)
    coord = make_coord((H, W)).unsqueeze(0).expand(2, -1, -1)
    cell = make_cell(coord, (H, W))
    flags = (True, local_ensemble, True)
    out, ref = run_both(feat, coord, cell, make_mlp(4, [32, 32], flags), flags, backend)
    assert_close_rel(out, ref, 5e-6, f"x{scale}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_border_and_outside_coords(backend):
    torch.manual_seed(1)
    h, w = 4, 7
    feat = torch.randn(2, 3, h, w)
    edges = torch.tensor([-1.0, 1.0, -1 + 1e-6, 1 - 1e-6, -1.5, 1.5, -3.0, 0.0])
    ys, xs = torch.meshgrid(edges, torch.cat([edges, -1 + 2 * torch.arange(w + 1) / w]), indexing="ij")
    coord = torch.stack([ys, xs], -1).view(1, -1, 2).repeat(2, 1, 1)
    cell = torch.full_like(coord, 2 / 17)
    for flags in FLAGS:
        out, ref = run_both(feat, coord, cell, make_mlp(3, [16, 16], flags), flags, backend)
        assert_close_rel(out, ref, 5e-6, f"border {flags}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_float64(backend):
    torch.manual_seed(2)
    flags = (True, True, True)
    feat = torch.randn(2, 6, 5, 3, dtype=torch.float64)
    coord, cell = random_queries(2, 257, torch.float64, h=5)
    out, ref = run_both(feat, coord, cell, make_mlp(6, [32, 32, 32], flags, torch.float64), flags, backend)
    assert out.dtype == torch.float64
    assert_close_rel(out, ref, 1e-12, "float64")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden,out_dim", [([256, 256, 256, 256], 3), ([64], 1), ([], 4), ([128, 64], 2)])
def test_forward_mlp_shapes(backend, hidden, out_dim):
    torch.manual_seed(len(hidden) + out_dim)
    flags = (True, True, True)
    feat = torch.randn(1, 8, 9, 11)
    coord, cell = random_queries(1, 200, torch.float32, h=9)
    mlp = make_mlp(8, hidden, flags, out_dim=out_dim)
    out, ref = run_both(feat, coord, cell, mlp, flags, backend)
    assert out.shape == (1, 200, out_dim)
    assert_close_rel(out, ref, 5e-6, f"hidden {hidden}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_non_contiguous_inputs(backend):
    torch.manual_seed(3)
    flags = (True, True, True)
    feat_big = torch.randn(2, 10, 7, 9)
    feat = feat_big[:, ::2, :, 1:8]  # strided channels and columns
    coord_t = torch.rand(2, 2, 150) * 2 - 1
    coord = coord_t.transpose(1, 2)  # (B, Q, 2) with stride 1 along Q
    cell = torch.full((2, 150, 4), 0.05)[..., ::2]
    mlp = make_mlp(5, [32, 16], flags)
    weights, biases = params(mlp)
    weights_nc = [W.t().contiguous().t() for W in weights]
    biases_nc = [torch.stack([b, b], 1)[:, 0] for b in biases]
    assert not coord.is_contiguous() and not weights_nc[0].is_contiguous() and not biases_nc[0].is_contiguous()
    ref = query_rgb_reference(feat.contiguous(), coord.contiguous(), cell.contiguous(), mlp, *flags)
    out = liif_query(feat, coord, cell, weights_nc, biases_nc, backend=backend)
    assert_close_rel(out, ref, 5e-6, "non-contiguous")


def test_backends_agree_with_each_other():
    if len(BACKENDS) < 2:
        pytest.skip("only one backend built")
    torch.manual_seed(4)
    flags = (True, True, True)
    feat = torch.randn(2, 8, 12, 10)
    coord, cell = random_queries(2, 999, torch.float32, h=12)
    weights, biases = params(make_mlp(8, [64, 64, 64], flags))
    outs = [liif_query(feat, coord, cell, weights, biases, backend=b) for b in BACKENDS]
    for o in outs[1:]:
        assert_close_rel(o, outs[0], 5e-6, "backend vs backend")


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_backend_chunking_is_exact(backend, monkeypatch):
    """Tiny chunk budgets (many chunks, ragged last chunk) give the same result."""
    from fastliif.ops import _liif_torch
    torch.manual_seed(5)
    flags = (True, True, True)
    feat = torch.randn(2, 4, 5, 6)
    coord, cell = random_queries(2, 333, torch.float32, h=5)
    mlp = make_mlp(4, [16, 16], flags)
    _, ref = run_both(feat, coord, cell, mlp, flags, backend)
    monkeypatch.setattr(_liif_torch, "ACTIVATION_BUDGET", 2 * 4 * 16 * 7)  # 7 queries per chunk
    out, _ = run_both(feat, coord, cell, mlp, flags, backend)
    assert_close_rel(out, ref, 5e-6, "chunked")


# ---------------------------------------------------------------- backward


def grads(fn, inputs, grad_out):
    out = fn()
    return torch.autograd.grad(out, inputs, grad_out, allow_unused=False)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-11)], ids=["fp32", "fp64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q,hidden", [(2, 4, 3, 5, 301, [24, 20, 16]), (1, 2, 1, 1, 50, [16]),
                                              (3, 3, 6, 4, 140, [])])
def test_backward_matches_reference(backend, flags, B, C, h, w, Q, hidden, dtype, tol):
    torch.manual_seed(hash((B, C, h, w, Q, flags, len(hidden))) % 2**31)
    feat_unfold, local_ensemble, cell_decode = flags
    feat = torch.randn(B, C, h, w, dtype=dtype, requires_grad=True)
    coord, cell = random_queries(B, Q, dtype, -1.1, 1.1, h=h)
    mlp = make_mlp(C, hidden, flags, dtype)
    weights, biases = params(mlp)
    inputs = [feat, *weights, *biases]
    g = torch.randn(B, Q, 3, dtype=dtype)
    ref = grads(lambda: query_rgb_reference(feat, coord, cell, mlp, *flags), inputs, g)
    out = grads(lambda: liif_query(feat, coord, cell, weights, biases, feat_unfold=feat_unfold,
                                   local_ensemble=local_ensemble, cell_decode=cell_decode, backend=backend),
                inputs, g)
    names = ["feat"] + [f"W{i}" for i in range(len(weights))] + [f"b{i}" for i in range(len(biases))]
    for name, a, b in zip(names, out, ref):
        assert_grad_close(a, b, tol, f"grad {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flags", [(True, True, True), (False, False, False), (True, False, True)])
def test_gradcheck_float64(backend, flags):
    torch.manual_seed(6)
    feat_unfold, local_ensemble, cell_decode = flags
    feat = torch.randn(2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    coord, cell = random_queries(2, 7, torch.float64, -1.1, 1.1, h=3)
    mlp = make_mlp(2, [5, 4], flags, torch.float64)
    weights, biases = params(mlp)

    def fn(feat, *wb):
        n = len(wb) // 2
        return liif_query(feat, coord, cell, list(wb[:n]), list(wb[n:]), feat_unfold=feat_unfold,
                          local_ensemble=local_ensemble, cell_decode=cell_decode, backend=backend)

    assert torch.autograd.gradcheck(fn, (feat, *weights, *biases), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coord_and_cell_get_no_gradient(backend):
    torch.manual_seed(7)
    feat = torch.randn(1, 2, 3, 3, requires_grad=True)
    coord, cell = random_queries(1, 10, torch.float32, h=3)
    coord.requires_grad_(True)
    weights, biases = params(make_mlp(2, [8], (True, True, True)))
    out = liif_query(feat, coord, cell, weights, biases, backend=backend)
    out.sum().backward()
    assert coord.grad is None and feat.grad is not None


# ---------------------------------------------------------------- edge cases and errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_queries(backend):
    feat = torch.randn(2, 3, 4, 4, requires_grad=True)
    coord = torch.empty(2, 0, 2)
    weights, biases = params(make_mlp(3, [8, 8], (True, True, True)))
    out = liif_query(feat, coord, torch.empty(2, 0, 2), weights, biases, backend=backend)
    assert out.shape == (2, 0, 3)
    out.sum().backward()  # backward through an empty query is fine and gives zero grads
    assert feat.grad is not None and feat.grad.abs().sum() == 0


def _valid():
    torch.manual_seed(8)
    feat = torch.randn(2, 3, 4, 5)
    coord, cell = random_queries(2, 11, torch.float32, h=4)
    weights, biases = params(make_mlp(3, [8], (True, True, True)))
    return feat, coord, cell, weights, biases


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda a: a.update(feat=a["feat"][0]), ValueError, "feat must be a \\(B, C, h, w\\)"),
    (lambda a: a.update(feat=a["feat"][:, :, :0]), ValueError, "non-empty feature map"),
    (lambda a: a.update(coord=a["coord"][0]), ValueError, "coord must be a \\(B, Q, 2\\)"),
    (lambda a: a.update(coord=a["coord"][..., :1]), ValueError, "coord must be a \\(B, Q, 2\\)"),
    (lambda a: a.update(coord=a["coord"][:1]), ValueError, "coord batch 1 does not match feat batch 2"),
    (lambda a: a.update(cell=a["cell"][:, :5]), ValueError, "cell must have coord's shape"),
    (lambda a: a.update(cell=None), ValueError, "cell is required"),
    (lambda a: a.update(weights=[a["weights"][0][:, :-1]] + a["weights"][1:]), ValueError,
     "weights\\[0\\] has 30 input columns, expected C\\*9 \\+ 2 \\+ 2 = 31"),
    (lambda a: a.update(weights=a["weights"][:1], biases=a["biases"][:1]), ValueError, None),
    (lambda a: a.update(biases=a["biases"][:1]), ValueError, "one bias per weight"),
    (lambda a: a.update(weights=[], biases=[]), ValueError, "at least one layer"),
    (lambda a: a.update(coord=a["coord"].double()), TypeError, "coord has dtype torch.float64"),
    (lambda a: a.update(feat=a["feat"].long()), TypeError, "floating point"),
    (lambda a: a.update(coord=a["coord"].to("meta")), ValueError, "coord is on meta"),
    (lambda a: a["coord"].__setitem__((0, 3, 1), float("nan")), ValueError, "finite"),
    (lambda a: a["cell"].__setitem__((1, 0, 0), float("inf")), ValueError, "finite"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_gives_clear_error(mutate, exc, match, backend):
    feat, coord, cell, weights, biases = _valid()
    args = dict(feat=feat, coord=coord, cell=cell, weights=list(weights), biases=list(biases))
    mutate(args)
    if match is None:  # a one-layer MLP of the wrong output width is still a valid decoder
        out = liif_query(args["feat"], args["coord"], args["cell"], args["weights"], args["biases"], backend=backend)
        assert out.shape == (2, 11, 8)
        return
    with pytest.raises(exc, match=match):
        liif_query(args["feat"], args["coord"], args["cell"], args["weights"], args["biases"], backend=backend)


def test_unknown_or_unavailable_backend():
    feat, coord, cell, weights, biases = _valid()
    with pytest.raises(ValueError, match="backend must be one of"):
        liif_query(feat, coord, cell, weights, biases, backend="fastest")
    # CPU tensors: "not available" here; on a GPU with the CUDA kernels built, "needs CUDA tensors"
    with pytest.raises((RuntimeError, ValueError), match="not available|needs CUDA tensors"):
        liif_query(feat, coord, cell, weights, biases, backend="cuda")


@needs_ext
def test_cpu_backend_rejects_half():
    feat, coord, cell, weights, biases = _valid()
    half = [t.bfloat16() for t in (feat, coord, cell)]
    with pytest.raises(TypeError, match="float32 and float64"):
        liif_query(*half, [w.bfloat16() for w in weights], [b.bfloat16() for b in biases], backend="cpu")


def test_auto_backend_choice():
    from fastliif.ops._backends import resolve
    expected = "cpu" if _ext.HAS_EXT else "torch"
    assert resolve("auto", torch.device("cpu"), torch.float32) == expected
    assert resolve("auto", torch.device("cpu"), torch.bfloat16) == "torch"
    assert resolve("auto", torch.device("meta"), torch.float32) == "torch"


KERNEL_BACKENDS = [b for b in BACKENDS if b != "torch"]  # backends with their own index math


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_index_arithmetic_beyond_int32(backend):
    """B*Q*hidden > 2^31 (2 x 16400 x 65536): results on sampled queries match the reference.

    grad_out is non-zero on the sampled queries only, so the full backward pass over every
    query must reproduce the reference gradients computed on those queries alone. The torch
    backend is left out: its indexing is PyTorch's own (int64), and at this width it is
    memory-bound for minutes on a 2-core machine.
    """
    torch.manual_seed(9)
    B, Q, hidden = 2, 16400, 1 << 16
    assert B * Q * hidden > 2**31
    flags = (True, False, True)
    feat = torch.randn(B, 1, 4, 4, requires_grad=True)
    coord, cell = random_queries(B, Q, torch.float32, h=4)
    mlp = make_mlp(1, [hidden], flags)
    weights, biases = params(mlp)
    picks = torch.tensor([0, 1, 4097, 8191, 12345, Q - 1])
    out = liif_query(feat, coord, cell, weights, biases, local_ensemble=False, backend=backend)
    sub_coord, sub_cell = coord[:, picks], cell[:, picks]
    ref = query_rgb_reference(feat, sub_coord, sub_cell, mlp, *flags)
    assert_close_rel(out[:, picks].detach(), ref.detach(), 5e-6, "sampled forward")
    g = torch.zeros(B, Q, 3)
    g[:, picks] = torch.randn(B, len(picks), 3)
    inputs = [feat, *weights, *biases]
    got = torch.autograd.grad(out, inputs, g)
    want = torch.autograd.grad(ref, inputs, g[:, picks])
    for name, a, b in zip(["feat", "W0", "W1", "b0", "b1"], got, want):
        assert_grad_close(a, b, 1e-5, f"grad {name}")


# ---------------------------------------------------------------- torch.library integration


@needs_ext
def test_opcheck_core_op():
    torch.manual_seed(10)
    proj = torch.randn(2, 3, 4, 16)
    coord, cell = random_queries(2, 9, torch.float32, h=3)
    w_rel = torch.randn(16, 4, requires_grad=True)
    b1 = torch.randn(16, requires_grad=True)
    weights = [torch.randn(8, 16, requires_grad=True), torch.randn(3, 8, requires_grad=True)]
    biases = [torch.randn(8, requires_grad=True), torch.randn(3, requires_grad=True)]
    proj.requires_grad_(True)
    for le, cd in itertools.product([True, False], repeat=2):
        wr = w_rel if cd else w_rel[:, :2].detach().requires_grad_(True)
        args = (proj, coord, cell if cd else None, wr, b1, weights, biases, le, cd)
        torch.library.opcheck(torch.ops.fastliif.liif_query_core.default, args)
        torch.library.opcheck(torch.ops.fastliif.liif_query_core_backward.default,
                              (torch.randn(2, 9, 3),) + tuple(
                                  a.detach() if isinstance(a, torch.Tensor) else
                                  [t.detach() for t in a] if isinstance(a, list) else a for a in args))


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch.manual_seed(11)
    flags = (True, True, True)
    feat = torch.randn(2, 4, 5, 6, requires_grad=True)
    coord, cell = random_queries(2, 77, torch.float32, h=5)
    weights, biases = params(make_mlp(4, [16, 16], flags))

    def fn(feat, coord, cell):
        return liif_query(feat, coord, cell, weights, biases, backend=backend)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out = compiled(feat, coord, cell)
    eager = fn(feat, coord, cell)
    assert_close_rel(out, eager, 1e-6, "compiled")
    g_c = torch.autograd.grad(out.sum(), feat)[0]
    g_e = torch.autograd.grad(eager.sum(), feat)[0]
    assert_grad_close(g_c, g_e, 1e-6, "compiled grad")


@needs_ext
def test_torch_compile_inductor_cpu_backend():
    torch.manual_seed(12)
    feat = torch.randn(1, 3, 4, 4)
    coord, cell = random_queries(1, 40, torch.float32, h=4)
    weights, biases = params(make_mlp(3, [16], (True, True, True)))
    fn = lambda f, c, s: liif_query(f, c, s, weights, biases, backend="cpu")  # noqa: E731
    out = torch.compile(fn, fullgraph=True)(feat, coord, cell)
    assert_close_rel(out, fn(feat, coord, cell), 1e-6, "inductor")


# ---------------------------------------------------------------- modules


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_liif_module_matches_reference_end_to_end(backend):
    torch.manual_seed(13)
    enc = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 16}}
    imnet = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [64, 64]}}
    ref = fastliif.reference.LIIF(enc, imnet)
    fused = fastliif.nn.LIIF(enc, imnet, backend=backend)
    fused.load_state_dict(ref.state_dict())
    assert list(fused.state_dict()) == list(ref.state_dict())
    inp = torch.rand(2, 3, 9, 7)
    H, W = 23, 15  # non-integer scales
    coord = make_coord((H, W)).unsqueeze(0).repeat(2, 1, 1)
    cell = make_cell(coord, (H, W))
    r = fastliif.reference.batched_predict(ref, inp, coord, cell, bsize=50)
    with torch.no_grad():
        f = fused(inp, coord, cell)
    assert_close_rel(f, r, 5e-6, "module")
    # training: identical parameter gradients through the encoder
    loss_r = ref(inp, coord, cell).sub(0.5).abs().mean()
    loss_f = fused(inp, coord, cell).sub(0.5).abs().mean()
    loss_r.backward()
    loss_f.backward()
    for (name, pr), pf in zip(ref.named_parameters(), fused.parameters()):
        if pr.grad is None:
            assert pf.grad is None, name
            continue
        assert_grad_close(pf.grad, pr.grad, 1e-5, f"grad {name}")


def test_default_constructor_is_liif_edsr_baseline():
    model = fastliif.nn.LIIF(encoder="edsr-baseline")
    keys = model.state_dict().keys()
    assert "imnet.layers.8.weight" in keys and "encoder.body.16.weight" in keys
    assert model.imnet.layers[0].in_features == 64 * 9 + 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_features_propagates_as_the_reference(backend):
    # torch.relu keeps NaN; a fused ReLU written as max(x, 0) or (x > 0 ? x : 0) would hide it
    torch.manual_seed(21)
    feat = torch.randn(1, 4, 5, 5)
    feat[0, 1, 2, 2] = float("nan")
    weights = [torch.randn(16, 4 * 9 + 4), torch.randn(16, 16), torch.randn(3, 16)]
    biases = [torch.randn(16), torch.randn(16), torch.randn(3)]
    coord = torch.rand(1, 60, 2) * 2 - 1
    cell = torch.full((1, 60, 2), 0.2)
    want = liif_query(feat, coord, cell, weights, biases, backend="torch")
    got = liif_query(feat, coord, cell, weights, biases, backend=backend)
    assert torch.isnan(want).any() and not torch.isnan(want).all()
    assert torch.equal(torch.isnan(got), torch.isnan(want))


# ---------------------------------------------------------------- precision, projection, auto rule


@pytest.mark.parametrize("backend", BACKENDS)
def test_bogus_precision_is_refused_on_every_backend(backend):
    feat, coord, cell, weights, biases = _valid()
    with pytest.raises(ValueError, match="precision must be one of"):
        liif_query(feat, coord, cell, weights, biases, backend=backend, precision="bogus")
    out = liif_query(feat, coord, cell, weights, biases, backend=backend, precision="ieee")  # valid: accepted
    assert out.shape == (*coord.shape[:2], 3)


@pytest.fixture
def conv_tf32_spy(monkeypatch):
    """Records cuDNN's TF32 switch as F.conv2d sees it, starting from the state given to start()."""
    import importlib
    lq = importlib.import_module("fastliif.ops.liif_query")  # the module (the package exports the function)
    seen = []
    real = torch.nn.functional.conv2d

    def spy(*args, **kwargs):
        seen.append(lq.conv_allows_tf32())
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    old = lq._conv_tf32_state()
    yield seen
    lq._set_conv_tf32_state(old)


@pytest.mark.parametrize("feat_unfold", [True, False])
def test_projection_tf32_switch_follows_precision(conv_tf32_spy, feat_unfold):
    """cuDNN allows TF32 by default, so the 'ieee' projection was TF32 on a GPU: the switch is
    off for 'ieee', on for the reduced precisions, untouched for None, and restored after."""
    from fastliif.ops.liif_query import _set_conv_tf32_state, conv_allows_tf32, project_features
    torch.manual_seed(5)
    C, n1 = 3, 16
    feat = torch.randn(2, C, 4, 5)
    w = torch.randn(n1, C * (9 if feat_unfold else 1))
    ref = F_unfold_project(feat, w, feat_unfold)
    assert ref.shape == (2, 4, 5, n1)
    for start in (True, False):
        for precision, want in (("ieee", False), ("tf32", True), ("bf16", True), (None, start)):
            _set_conv_tf32_state(start)
            conv_tf32_spy.clear()
            out = project_features(feat, w, feat_unfold, precision)
            assert conv_tf32_spy == [want], (start, precision)
            assert conv_allows_tf32() == start  # restored
            assert_close_rel(out, ref, 2e-6, f"projection {precision}")


def F_unfold_project(feat, w, feat_unfold):
    """The projection the slow way: unfold (or not) and multiply, float64."""
    B, C, h, w_ = feat.shape
    f = feat.double()
    cols = torch.nn.functional.unfold(f, 3, padding=1).view(B, C * 9, h, w_) if feat_unfold else f
    return torch.einsum("bkyx,nk->byxn", cols, w.double()).float()


def test_auto_rule_and_fastliif_backend_override(monkeypatch):
    from fastliif.ops._backends import choose
    cpu = torch.device("cpu")
    expected = "cpu" if _ext.HAS_EXT else "torch"
    assert choose("auto", cpu, torch.float32)[0] == expected
    assert choose("auto", cpu, torch.float64)[0] == expected
    assert choose("auto", cpu, torch.bfloat16)[0] == "torch"
    monkeypatch.setenv("FASTLIIF_BACKEND", "torch")
    assert choose("auto", cpu, torch.float32) == ("torch", "set by FASTLIIF_BACKEND")
    if _ext.HAS_EXT:
        assert choose("cpu", cpu, torch.float32) == ("cpu", "asked for by name")  # a name beats the variable
    feat, coord, cell, weights, biases = _valid()
    assert liif_query(feat, coord, cell, weights, biases).shape == (*coord.shape[:2], 3)
    monkeypatch.setenv("FASTLIIF_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="'cuda' \\(from FASTLIIF_BACKEND\\) is not available"):
        liif_query(feat, coord, cell, weights, biases)
    monkeypatch.setenv("FASTLIIF_BACKEND", "fastest")
    with pytest.raises(ValueError, match="FASTLIIF_BACKEND must be one of"):
        liif_query(feat, coord, cell, weights, biases)


def test_auto_on_cuda_order_and_fallbacks(monkeypatch):
    """On CUDA: triton, then cuda, then torch; a decoder the Triton kernel rejects, or a gradient
    under deterministic mode, moves on with the reason. Checked on any machine by faking the
    availability of both GPU backends (no tensor is created on the device)."""
    from fastliif.ops import _backends
    from fastliif.ops.liif_query import _rejects
    pytest.importorskip("triton")
    cuda = torch.device("cuda")
    status = {"triton": (True, "fake"), "cuda": (True, "fake")}
    monkeypatch.setattr(_backends, "_triton_status", lambda: status["triton"])
    monkeypatch.setattr(_backends, "_cuda_status", lambda op: status["cuda"])
    liif = [torch.empty(32, 40), torch.empty(32, 32), torch.empty(3, 32)]
    assert _backends.choose("auto", cuda, torch.float32, rejects=_rejects(liif, True)) == ("triton", "first choice")
    assert _backends.choose("auto", cuda, torch.float64)[0] == "torch"  # no fused GPU backend takes fp64
    for bad, why in (([torch.empty(24, 40), torch.empty(3, 24)], "power-of-two hidden width"),
                     ([torch.empty(32, 40), torch.empty(16, 32), torch.empty(3, 16)], "one width"),
                     ([torch.empty(3, 40)], "at least one hidden layer"),
                     ([torch.empty(32, 40), torch.empty(17, 32)], "out_dim <= 16")):
        name, reason = _backends.choose("auto", cuda, torch.float32, rejects=_rejects(bad, False))
        assert name == "cuda" and why in reason, (name, reason)
    status["cuda"] = (False, "not built")
    name, reason = _backends.choose("auto", cuda, torch.float32, rejects=_rejects([torch.empty(3, 40)], False))
    assert name == "torch" and "at least one hidden layer" in reason and "cuda: not built" in reason
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        name, reason = _backends.choose("auto", cuda, torch.float32, rejects=_rejects(liif, True))
        assert name == "torch" and "not deterministic" in reason
        assert _backends.choose("auto", cuda, torch.float32, rejects=_rejects(liif, False))[0] == "triton"
    finally:
        torch.use_deterministic_algorithms(old)
    status["triton"] = (False, "no triton")
    status["cuda"] = (True, "fake")
    assert _backends.choose("auto", cuda, torch.float32, rejects=_rejects(liif, True))[0] == "cuda"


def test_cuda_probe_asks_the_dispatcher_for_each_op(monkeypatch):
    from fastliif.ops import _backends, availability
    if not _ext.HAS_EXT:
        assert availability()["cuda"] == (False, f"extension not built ({_ext.EXT_ERROR})")
        return
    registered = torch._C._dispatch_has_kernel_for_dispatch_key("fastliif::liif_query_core", "CUDA")
    assert availability()["cuda"][0] == (registered and torch.cuda.is_available())
    asked = []

    def has_kernel(op, key):
        asked.append((op, key))
        return True

    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", has_kernel)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert availability("liif_query")["cuda"][0] and availability("dynamic_conv")["cuda"][0]
    assert asked == [("fastliif::liif_query_core", "CUDA"), ("fastliif::dynamic_conv", "CUDA")]
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", lambda op, key: False)
    ok, reason = _backends.availability()["cuda"]
    assert not ok and "without CUDA kernels" in reason


def test_env_shows_the_auto_choice(monkeypatch):
    from fastliif.env import report
    text = report()
    expected = "cpu" if _ext.HAS_EXT else "torch"
    assert "backends (dynamic_conv):" in text and "auto choice (FASTLIIF_BACKEND=auto" in text
    assert any(line.strip().startswith("liif_query cpu float32") and f"-> {expected}" in line
               for line in text.splitlines())
    monkeypatch.setenv("FASTLIIF_BACKEND", "torch")
    assert "-> torch   (set by FASTLIIF_BACKEND)" in report()


def test_dot_precision_reads_the_new_matmul_flag():
    """PyTorch 2.9+: after torch.backends.cuda.matmul.fp32_precision = "tf32" the legacy getters
    raise; dot_precision reads the per-backend flag and follows it."""
    from fastliif.ops import dot_precision
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has no per-backend fp32_precision flag")
    cpu, old = torch.device("cpu"), matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        assert dot_precision(torch.float32, cpu) == "tf32"
        matmul.fp32_precision = "ieee"
        assert dot_precision(torch.float32, cpu) == "ieee"
    finally:
        matmul.fp32_precision = old
