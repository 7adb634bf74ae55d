"""The CUDA kernels' logic on CPU: csrc/cuda/*.cu compiled as C++ against a small stand-in for
the CUDA runtime (tests/native/cuda_emu.h: a std::thread per CUDA thread, barriers for
__syncthreads, blocks one at a time, a 3-"SM" device so persistent blocks loop over tiles).

This runs the kernels' logic (FFMA GEMMs, tiling, shared-memory layout, ragged tiles, the
split-buffer gradient reduction, the gathers of dynamic_conv, and the tensor-core path's fragment
indexing against a software mma.sync written from the PTX fragment tables) against the CPU
kernels without a GPU. It cannot show timing, races the hardware would expose, the real
mma.sync/cp.async instructions (stand-ins here), or occupancy: that is
tests/test_cuda_backend.py's job on a GPU.
"""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from fastliif.ops import project_features
from liif_helpers import FLAGS, make_mlp, params, random_queries

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "tests" / "native"
CXX = shutil.which("c++") or shutil.which("g++")
if not hasattr(torch.ops.fastliif, "liif_query_core"):
    pytest.skip("needs the CPU extension fastliif._C (the emulated kernels are compared to it)", allow_module_level=True)

F, I64 = ctypes.POINTER(ctypes.c_float), ctypes.c_int64


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    if CXX is None:
        pytest.skip("no host C++ compiler (c++/g++) on PATH")
    lib = tmp_path_factory.mktemp("emu") / "cuda_emu.so"
    cmd = [CXX, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-ffp-contract=off",
           str(NATIVE / "cuda_emu_liif.cpp"), str(NATIVE / "cuda_emu_dconv.cpp"), "-o", str(lib)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode != 0 and "barrier" in run.stderr:
        pytest.skip("the host compiler lacks C++20 <barrier>")
    assert run.returncode == 0, run.stderr
    return ctypes.CDLL(str(lib))


def ptr(t):
    assert t.dtype == torch.float32 and t.is_contiguous()
    return ctypes.cast(t.data_ptr(), F)


def ptr_array(ts):
    return (F * max(1, len(ts)))(*[ptr(t) for t in ts])


def liif_args(proj, coord, cell, w_rel, b1, weights, biases, ensemble):
    B, h, w, n1 = proj.shape
    widths = [n1] + [W.shape[0] for W in weights]
    keep = [proj, coord, w_rel, b1, *weights, *biases] + ([cell] if cell is not None else [])
    args = [ptr(proj), ptr(coord), ptr(cell) if cell is not None else None, ptr(w_rel), ptr(b1),
            ptr_array(weights), ptr_array(biases), (ctypes.c_int * len(widths))(*widths), len(weights),
            4 if cell is not None else 2, int(ensemble), I64(B), I64(coord.shape[1]), I64(h), I64(w)]
    return args, keep, widths


def operands(flags, C, hidden, B, h, w, Q, seed, out_dim=3):
    torch.manual_seed(seed)
    feat_unfold, ensemble, cell_decode = flags
    feat = torch.randn(B, C, h, w)
    coord, cell = random_queries(B, Q, torch.float32, -1.2, 1.2, h=h)
    weights, biases = params(make_mlp(C, hidden, flags, out_dim=out_dim))
    n_feat = C * 9 if feat_unfold else C
    with torch.no_grad():
        proj = project_features(feat, weights[0][:, :n_feat], feat_unfold).contiguous()
    w_rel = weights[0][:, n_feat:].detach().contiguous()
    rest_w = [W.detach().contiguous() for W in weights[1:]]
    rest_b = [b.detach().contiguous() for b in biases[1:]]
    return proj, coord, cell if cell_decode else None, w_rel, biases[0].detach().contiguous(), rest_w, rest_b, ensemble


CASES = [(flags, [32, 32, 32], (2, 4, 3, 5, 70)) for flags in FLAGS] + [
    ((True, True, True), [24, 40], (1, 3, 4, 4, 33)),   # widths not multiples of 32, ragged last tile
    ((True, True, True), [], (2, 2, 3, 3, 20)),         # one Linear: no hidden layer
    ((True, False, True), [300 // 2], (1, 2, 1, 1, 45)),  # 1x1 map, width 150
]


@pytest.mark.parametrize("flags,hidden,shape", CASES, ids=lambda v: str(v).replace(" ", ""))
def test_emulated_liif_forward_and_backward_match_cpu(emu, flags, hidden, shape):
    B, C, h, w, Q = shape
    ops = operands(flags, C, hidden, B, h, w, Q, seed=Q + len(hidden))
    proj, coord, cell, w_rel, b1, Ws, bs, ensemble = ops
    want = torch.ops.fastliif.liif_query_core(proj, coord, cell, w_rel, b1, Ws, bs, ensemble, cell is not None)
    args, keep, widths = liif_args(*ops)
    out = torch.full(want.shape, float("nan"))
    assert emu.emu_liif_forward(*args, 0, ptr(out)) == 0
    torch.testing.assert_close(out, want, rtol=2e-5, atol=2e-6)

    g = torch.randn(want.shape)
    gp, gwr, gb1, gw, gb = torch.ops.fastliif.liif_query_core_backward(g, proj, coord, cell, w_rel, b1, Ws, bs,
                                                                       ensemble, cell is not None)
    grad_proj = torch.zeros_like(proj)
    emu.emu_liif_param_count.restype = I64
    n_params = emu.emu_liif_param_count((ctypes.c_int * len(widths))(*widths), len(Ws), 4 if cell is not None else 2)
    grad_params = torch.full((n_params,), float("nan"))
    assert emu.emu_liif_backward(*args, 0, ptr(g), ptr(grad_proj), ptr(grad_params)) == 0
    expected = torch.cat([t.reshape(-1) for pair in zip(gw, gb) for t in pair] if Ws else [torch.empty(0)])
    expected = torch.cat([gwr.reshape(-1), gb1.reshape(-1), expected])
    torch.testing.assert_close(grad_params, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_proj, gp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["shared", "per_channel"])
@pytest.mark.parametrize("N,C,H,W,k,s", [(1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 3, 1), (1, 5, 9, 40, 3, 2),
                                         (1, 2, 6, 5, 7, 3)])
def test_emulated_dynamic_conv_matches_cpu(emu, mode, N, C, H, W, k, s):
    torch.manual_seed(N + C + H + k + s)
    per_channel = mode == "per_channel"
    kc = (C if per_channel else 1) * k * k * s * s
    image, kernel = torch.randn(N, C, H, W), torch.randn(N, kc, H, W)
    grad = torch.randn(N, C, H * s, W * s)
    want = torch.ops.fastliif.dynamic_conv(image, kernel, k, s, per_channel)
    want_gi, want_gk = torch.ops.fastliif.dynamic_conv_backward(grad, image, kernel, k, s, per_channel)
    dims = [I64(v) for v in (N, C, H, W, k, s)]
    out = torch.full(want.shape, float("nan"))
    assert emu.emu_dconv_forward(ptr(image), ptr(kernel), ptr(out), *dims, int(per_channel)) == 0
    gi, gk = torch.full(image.shape, float("nan")), torch.full(kernel.shape, float("nan"))
    assert emu.emu_dconv_backward(ptr(grad), ptr(image), ptr(kernel), ptr(gi), ptr(gk), *dims, int(per_channel)) == 0
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gi, want_gi, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gk, want_gk, rtol=1e-5, atol=1e-5)


# (precision code, bound on max |error| / max |reference|): operand rounding of 2^-11 (tf32, fp16)
# or 2^-8 (bf16) through three 32-wide layers
REDUCED = [(1, 2e-3), (2, 2e-2), (3, 2e-3)]


@pytest.mark.parametrize("precision,tol", REDUCED, ids=["tf32", "bf16", "fp16"])
def test_emulated_tensor_core_path(emu, precision, tol):
    flags = (True, True, True)
    ops = operands(flags, 4, [24, 40, 32], 2, 3, 5, 40, seed=11)  # widths not multiples of 16 or 32
    proj, coord, cell, w_rel, b1, Ws, bs, ensemble = ops
    want = torch.ops.fastliif.liif_query_core(proj, coord, cell, w_rel, b1, Ws, bs, ensemble, True)
    args, keep, widths = liif_args(*ops)
    out, exact = torch.full(want.shape, float("nan")), torch.full(want.shape, float("nan"))
    assert emu.emu_liif_forward(*args, precision, ptr(out)) == 0
    assert emu.emu_liif_forward(*args, 0, ptr(exact)) == 0
    err = ((out - want).abs().max() / want.abs().max()).item()
    assert err <= tol, f"forward error {err:.2e}"
    assert not torch.equal(out, exact), "reduced precision gave the exact result: the mma path did not run"
    g = torch.randn(want.shape)
    gp = torch.ops.fastliif.liif_query_core_backward(g, proj, coord, cell, w_rel, b1, Ws, bs, ensemble, True)[0]
    grad_proj = torch.zeros_like(proj)
    emu.emu_liif_param_count.restype = I64
    n_params = emu.emu_liif_param_count((ctypes.c_int * len(widths))(*widths), len(Ws), 4)
    grad_params = torch.full((n_params,), float("nan"))
    assert emu.emu_liif_backward(*args, precision, ptr(g), ptr(grad_proj), ptr(grad_params)) == 0
    assert torch.isfinite(grad_params).all()
    err = ((grad_proj - gp).norm() / gp.norm()).item()
    assert err <= 10 * tol, f"grad proj error {err:.2e}"
