"""Triton backend of liif_query vs the reference: on a GPU, or on CPU through the interpreter.

Without CUDA, tests/conftest.py sets TRITON_INTERPRET=1 and the kernels run on CPU tensors
(fp32 only, small shapes). On a GPU every tensor is a CUDA tensor (DEV, liif_helpers.triton_device).
GPU-only tests (reduced precision, real sizes) skip without a GPU or under the interpreter.
"""
import pytest
import torch

from fastliif.ops import dot_precision, liif_query
from fastliif.reference import query_rgb_reference
from liif_helpers import (FLAGS, GPU_REASON, assert_close_rel, assert_grad_close, check_backward, check_border_coords,
                          check_empty_queries, check_forward, check_mlp_shape, check_non_contiguous, check_output_grid,
                          make_mlp, on_real_gpu, params, precision_errors, random_queries,
                          triton_device)

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
    check_forward("triton", DEV, flags, B, C, h, w, Q)


@pytest.mark.parametrize("hidden,out_dim", [([16], 3), ([64, 64], 1), ([32, 32], 4), ([16] * 5, 2)])
def test_forward_mlp_depths_and_widths(hidden, out_dim):
    check_mlp_shape("triton", DEV, hidden, out_dim, Q=40, tol=5e-6)


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.7, 30.0])
@pytest.mark.parametrize("local_ensemble", [True, False])
def test_forward_output_grids_at_scales(scale, local_ensemble):
    check_output_grid("triton", DEV, scale, local_ensemble, max_queries=600)  # keep the interpreter quick


def test_forward_border_and_outside_coords():
    check_border_coords("triton", DEV)


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "unfold%d-ens%d-cell%d" % f)
@pytest.mark.parametrize("B,C,h,w,Q,hidden", [(2, 4, 3, 5, 45, [32, 32, 32]), (1, 2, 1, 1, 20, [16])])
def test_backward_matches_reference(flags, B, C, h, w, Q, hidden):
    check_backward("triton", DEV, flags, B, C, h, w, Q, hidden)


def test_non_contiguous_inputs_and_many_tiles():
    check_non_contiguous("triton", DEV, Q=150)


def test_empty_queries():
    check_empty_queries("triton", DEV)


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


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision,dtype", [("ieee", torch.float32), ("tf32", torch.float32),
                                             ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_gpu_precision_within_twice_pytorch_error(precision, dtype):
    err, torch_err = precision_errors("triton", DEV, precision, dtype)
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


# ---------------------------------------------------------------- GPU-readiness checks (issue 11)


def _reference64_and_grads(feat, coord, cell, mlp, flags, g):
    """The official query in float64 and its gradients w.r.t. feat and every decoder parameter."""
    mlp64 = type(mlp)(mlp.layers[0].in_features, mlp.layers[-1].out_features,
                      [layer.out_features for layer in mlp.layers[0:-1:2]]).to(feat.device).double()
    mlp64.load_state_dict({k: v.double() for k, v in mlp.state_dict().items()})
    feat64 = feat.detach().double().requires_grad_()
    out = query_rgb_reference(feat64, coord.double(), cell.double(), mlp64, *flags)
    weights, biases = params(mlp64)
    grads = torch.autograd.grad(out, [feat64, *weights, *biases], g.double())
    return out.detach(), grads


def _check_against_float64(feat, coord, cell, mlp, flags, tol_out, tol_grad, precision=None):
    feat = feat.detach().requires_grad_()
    weights, biases = params(mlp)
    g = torch.randn(*coord.shape[:2], weights[-1].shape[0], device=feat.device)
    ref, ref_grads = _reference64_and_grads(feat, coord, cell, mlp, flags, g)
    out = liif_query(feat, coord, cell, weights, biases, feat_unfold=flags[0], local_ensemble=flags[1],
                     cell_decode=flags[2], backend="triton", precision=precision)
    assert_close_rel(out.double(), ref, tol_out, "forward vs float64")
    got = torch.autograd.grad(out, [feat, *weights, *biases], g)
    names = ["feat"] + [f"W{i}" for i in range(len(weights))] + [f"b{i}" for i in range(len(biases))]
    for name, a, b in zip(names, got, ref_grads):
        assert_grad_close(a.double(), b, tol_grad, f"grad {name}")


def test_many_tiles_per_program_with_gradients(monkeypatch, triton_dev):
    """The persistent tile loop, its barriers and the contended atomics: a grid forced down to 2
    programs makes each run several tiles (5 tiles of 16 queries: 3 and 2), forward and every
    gradient vs float64. On a GPU the grid is the real one: test_gpu_many_tiles_real_size."""
    programs = 2
    if triton_dev.type == "cuda":
        pytest.skip("the interpreter's program count; on a GPU see test_gpu_many_tiles_real_size")
    monkeypatch.setattr(klq, "INTERPRETER_PROGRAMS", programs)
    launched = []
    real = klq._programs
    monkeypatch.setattr(klq, "_programs", lambda n, d: launched.append(real(n, d)) or launched[-1])
    torch.manual_seed(programs)
    flags = (True, True, True)
    B, Q = 1, 80
    feat = torch.randn(B, 3, 5, 4, device=triton_dev)
    coord, cell = to_dev(*random_queries(B, Q, torch.float32, -1.1, 1.1, h=5))
    mlp = make_mlp(3, [64, 64], flags).to(triton_dev)  # H=64: two 32-wide backward chunks
    _check_against_float64(feat, coord, cell, mlp, flags, 5e-6, 1e-5)
    tiles = -(-B * Q // klq._configs()[0].kwargs["BQ"])
    assert len(launched) == 2 and all(g({"BQ": 16}) == (programs,) for g, _ in launched)
    assert tiles == 2 * programs + 1  # several tiles per program, unevenly split


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision,tol", [("ieee", 1e-5), ("tf32", 5e-3)])
def test_gpu_many_tiles_real_size(precision, tol):
    """LIIF's decoder at a real size (2 x 2^16 queries on a 48x40 map, 256 x 4): thousands of tiles
    over 2 x SMs persistent programs, gradients through the contended atomics vs float64."""
    torch.manual_seed(17)
    flags = (True, True, True)
    B, Q, C, h, w = 2, 1 << 16, 64, 48, 40
    feat = torch.randn(B, C, h, w, device=DEV)
    coord, cell = to_dev(*random_queries(B, Q, torch.float32, h=h))
    mlp = make_mlp(C, [256] * 4, flags).to(DEV)
    _check_against_float64(feat, coord, cell, mlp, flags, tol, tol, precision)


def test_autotune_key_has_a_size_class(monkeypatch, triton_dev):
    """A tiny warm-up call must not fix the configuration of full-size calls: the tuning key of both
    kernels holds the number of queries rounded up to a power of two (capped)."""
    seen = []
    for kern in (klq._liif_fwd_kernel, klq._liif_bwd_kernel):
        assert "NQ" in kern.keys
        real = kern.run

        def spy(*args, _real=real, _kern=kern, **kwargs):
            named = dict(zip(_kern.arg_names, args), **kwargs)
            seen.append((_kern.fn.__name__, tuple(named[k] for k in _kern.keys)))
            return _real(*args, **kwargs)

        monkeypatch.setattr(kern, "run", spy)
    flags = (True, True, True)
    mlp = make_mlp(2, [16, 16], flags).to(triton_dev)
    weights, biases = params(mlp)
    feat = torch.randn(1, 2, 3, 3, device=triton_dev, requires_grad=True)
    for Q in (3, 40):
        coord, cell = to_dev(*random_queries(1, Q, torch.float32, h=3))
        liif_query(feat, coord, cell, weights, biases, backend="triton").sum().backward()
    assert [name for name, _ in seen] == ["_liif_fwd_kernel", "_liif_bwd_kernel"] * 2
    (_, tiny_f), (_, tiny_b), (_, big_f), (_, big_b) = seen
    assert tiny_f != big_f and tiny_b != big_b
    assert tiny_f[-1] == 4 and big_f[-1] == 64  # next power of two of the queries
    assert klq.size_class(10**9) == klq.SIZE_CLASS_MAX  # a bounded number of tuning runs


@pytest.fixture
def deterministic_mode():
    old = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(old[0], warn_only=old[1])


def test_deterministic_mode_refuses_the_atomic_backward(deterministic_mode, triton_dev):
    """use_deterministic_algorithms(True): the forward runs, the backward (atomics) refuses naming the
    deterministic backends; warn_only=True warns and runs; auto never picks it (test_liif_query)."""
    flags = (True, True, True)
    weights, biases = params(make_mlp(2, [16, 16], flags).to(triton_dev))
    feat = torch.randn(1, 2, 3, 3, device=triton_dev, requires_grad=True)
    coord, cell = to_dev(*random_queries(1, 20, torch.float32, h=3))
    torch.use_deterministic_algorithms(True)
    out = liif_query(feat, coord, cell, weights, biases, backend="triton")
    with pytest.raises(RuntimeError, match="liif_query: the triton backward .* not deterministic.*'torch' or 'cpu'"):
        out.sum().backward()
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = liif_query(feat, coord, cell, weights, biases, backend="triton")
    with pytest.warns(UserWarning, match="not deterministic"):
        out.sum().backward()
    assert feat.grad is not None and torch.isfinite(feat.grad).all()


@pytest.mark.parametrize("precision,want", [("ieee", False), ("tf32", True)])
def test_projection_runs_with_the_tf32_switch_of_the_precision(monkeypatch, triton_dev, precision, want):
    """Through liif_query: cuDNN's TF32 switch as the 3x3 projection sees it, for each precision."""
    import importlib
    lq = importlib.import_module("fastliif.ops.liif_query")
    seen = []
    real = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d",
                        lambda *a, **k: seen.append(lq.conv_allows_tf32()) or real(*a, **k))
    old = lq._conv_tf32_state()
    lq._set_conv_tf32_state(not want)
    try:
        weights, biases = params(make_mlp(2, [16, 16], (True, True, True)).to(triton_dev))
        coord, cell = to_dev(*random_queries(1, 20, torch.float32, h=3))
        liif_query(torch.randn(1, 2, 3, 3, device=triton_dev), coord, cell, weights, biases, backend="triton",
                   precision=precision)
        assert seen == [want] and lq.conv_allows_tf32() is (not want)
    finally:
        lq._set_conv_tf32_state(old)


def test_gradient_atomics_are_relaxed_and_offsets_int64():
    """Review checks on the kernel source: every atomic is relaxed (nothing reads it back), and the
    corner/program offsets that can pass 2^31 are cast to int64 before multiplying."""
    import inspect
    src = inspect.getsource(klq)
    atomics = src.count("tl.atomic_add(")
    assert atomics >= 10 and src.count('sem="relaxed")') == atomics
    assert "pid * SCRATCH_STRIDE" not in src and src.count("pid.to(tl.int64) * SCRATCH_STRIDE") == 2
    assert "t * N" not in src and "tl.cast(t, tl.int64) * N" in src


def test_launchers_run_under_the_tensors_device_guard(monkeypatch, triton_dev):
    """Both LIIF launches enter device_guard(tensor's device), as the dynamic_conv ones do: tensors
    on cuda:1 launch on cuda:1 whatever the current device."""
    import contextlib

    from fastliif.kernels._common import device_guard
    guarded = []
    monkeypatch.setattr(klq, "device_guard", lambda d: guarded.append(d) or contextlib.nullcontext())
    weights, biases = params(make_mlp(2, [16, 16], (True, True, True)).to(triton_dev))
    feat = torch.randn(1, 2, 3, 3, device=triton_dev, requires_grad=True)
    coord, cell = to_dev(*random_queries(1, 20, torch.float32, h=3))
    liif_query(feat, coord, cell, weights, biases, backend="triton").sum().backward()
    assert guarded == [feat.device, feat.device]
    assert isinstance(device_guard(torch.device("cuda", 1)), torch.cuda.device)
    assert isinstance(device_guard(torch.device("cpu")), contextlib.nullcontext)
