"""Triton kernels of the fused LIIF query (DESIGN.md section 4), forward and backward.

One program owns a tile of BQ queries at a time (persistent loop over tiles). Per corner it
gathers the projected-feature rows P[row] (B*h*w, H), adds the rank-2/4 rel_coord/rel_cell
term and the bias, then runs the hidden layers with tl.dot, streaming the weights in
(BN x BK) chunks; the area-weighted last hidden state accumulates in registers and the
last layer runs once per query. Layer activations of the tile live in a small per-program
scratch buffer (K-chunks of an activation cannot be sliced out of registers); it is sized
by the number of programs, not by Q, and stays in L2 on a GPU.

Backward recomputes the tile's forward into scratch, backpropagates layer by layer for all
corners together, adds weight/bias gradients with atomics once per tile and scatters the
first-layer gradient into dP with atomic adds; conv2d's backward then gives d(feat).

Nearest-cell indices, rel_coord and the ensemble weights come from a small side pass
(fastliif.ops._liif_torch.corner_geometry, 16 bytes per query-corner) that asks
grid_sample itself, so ties round exactly as the reference does on every device.

Requirements: all hidden layers of one width H (a power of two >= 16; LIIF: 256), at least
one hidden layer, out_dim <= 16. Runs on CUDA tensors, or on CPU tensors under
TRITON_INTERPRET=1 (fp32/fp64, small shapes) for testing.

Determinism: the forward is deterministic. The backward adds weight/bias gradients and dP
with relaxed atomics (nothing is read back, so ordering does not matter), in whatever order
the programs arrive: gradients are not bit-identical run to run (fp32 sums reordered, ~1e-7
relative). Under torch.use_deterministic_algorithms(True) the backward refuses (or warns with
warn_only=True); the torch and cpu backends are deterministic.

Offsets: query, row and program offsets are int64 (q, ROWS, pid cast before multiplying), so
B*Q*4 corners, B*h*w*H and programs x scratch stride may pass 2^31.
"""
import warnings

import torch
import triton
import triton.language as tl

from ._common import device_guard, interpreting

OUT_P = 16  # last-layer width padded for tl.dot
BQ_MAX = 64  # largest tile of queries among the configurations (sizes the scratch)
INTERPRETER_PROGRAMS = 4  # persistent programs under the interpreter (tests lower it: many tiles each)
SIZE_CLASS_MAX = 1 << 18  # queries: above this every configuration fills the GPU with tiles


def _configs():
    """A handful of tile shapes on a GPU; exactly one under the interpreter (several crash it)."""
    if interpreting():
        return [triton.Config({"BQ": 16}, num_warps=4)]
    return [triton.Config({"BQ": bq}, num_warps=w) for bq, w in ((16, 4), (32, 4), (32, 8), (64, 8))]


GRADS = ["DP", "DWREL", "DB1", "DWH", "DBH", "DWL", "DBL"]  # zeroed before each autotune trial
# NQ (size_class of N, an otherwise unused argument) keys the tuning on the problem size: a tiny
# warm-up call must not fix the configuration used for full-size calls.
KEY = ["H", "NC", "L", "DOT", "NQ"]


def size_class(n):
    """Queries rounded up to a power of two, capped at SIZE_CLASS_MAX: the autotune size key."""
    return min(triton.next_power_of_2(max(int(n), 1)), SIZE_CLASS_MAX)


@triton.jit
def _dot(a, b, DOT: tl.constexpr):
    """a @ b with fp32 accumulation: IEEE/TF32 fp32 operands, or bf16/fp16 operands."""
    if DOT == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
    elif DOT == "fp16":
        return tl.dot(a.to(tl.float16), b.to(tl.float16), out_dtype=tl.float32)
    else:
        return tl.dot(a, b, input_precision=DOT, out_dtype=tl.float32)


@triton.jit
def _first_layer(DST, P, ROWS, REL, RELCELL, WREL, B1, t, q, qmask, N,
                 H: tl.constexpr, BQ: tl.constexpr, BN: tl.constexpr, CELL: tl.constexpr,
                 NREL: tl.constexpr):
    """DST = relu(P[row] + W_rel @ [rel_y, rel_x(, cell_y, cell_x)] + b1) for corner t, in
    column chunks of BN (no [BQ, H] tensor in registers)."""
    r = tl.arange(0, BQ)
    tq = tl.cast(t, tl.int64) * N + q  # int64: 4 corners x N may pass 2^31
    row = tl.load(ROWS + tq, mask=qmask, other=0)
    ry = tl.load(REL + tq * 2, mask=qmask, other=0.0).to(tl.float32)
    rx = tl.load(REL + tq * 2 + 1, mask=qmask, other=0.0).to(tl.float32)
    cy = tl.zeros((BQ,), dtype=tl.float32)
    cx = tl.zeros((BQ,), dtype=tl.float32)
    if CELL:
        cy = tl.load(RELCELL + q * 2, mask=qmask, other=0.0).to(tl.float32)
        cx = tl.load(RELCELL + q * 2 + 1, mask=qmask, other=0.0).to(tl.float32)
    for n0 in range(0, H, BN):
        c = n0 + tl.arange(0, BN)
        h = tl.load(P + row[:, None] * H + c[None, :], mask=qmask[:, None], other=0.0).to(tl.float32)
        h += tl.load(B1 + c).to(tl.float32)[None, :]
        h += ry[:, None] * tl.load(WREL + c * NREL).to(tl.float32)[None, :]
        h += rx[:, None] * tl.load(WREL + c * NREL + 1).to(tl.float32)[None, :]
        if CELL:
            h += cy[:, None] * tl.load(WREL + c * NREL + 2).to(tl.float32)[None, :]
            h += cx[:, None] * tl.load(WREL + c * NREL + 3).to(tl.float32)[None, :]
        # PropagateNan.ALL: NaN stays NaN, as torch.relu (the default max would return 0)
        tl.store(DST + r[:, None] * H + c[None, :], tl.maximum(h, 0.0, propagate_nan=tl.PropagateNan.ALL))


@triton.jit
def _hidden_layer(SRC, DST, W, BIAS, H: tl.constexpr, BQ: tl.constexpr, BN: tl.constexpr,
                  BK: tl.constexpr, DOT: tl.constexpr):
    """DST[:, :] = relu(SRC @ W^T + b) for one [BQ, H] activation in scratch."""
    r = tl.arange(0, BQ)
    for n0 in range(0, H, BN):
        ncol = n0 + tl.arange(0, BN)
        acc = tl.zeros((BQ, BN), dtype=tl.float32)
        for k0 in range(0, H, BK):
            kcol = k0 + tl.arange(0, BK)
            a = tl.load(SRC + r[:, None] * H + kcol[None, :])
            w = tl.load(W + ncol[None, :] * H + kcol[:, None]).to(tl.float32)  # W^T chunk [BK, BN]
            acc += _dot(a, w, DOT)
        acc += tl.load(BIAS + ncol).to(tl.float32)[None, :]
        tl.store(DST + r[:, None] * H + ncol[None, :], tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL))


@triton.autotune(configs=_configs(), key=KEY)
@triton.jit
def _liif_fwd_kernel(P, ROWS, REL, WTS, RELCELL, WREL, B1, WH, BH, WL, BL, OUT, SCRATCH,
                     N, L, OUT_DIM, SCRATCH_STRIDE, NQ,
                     H: tl.constexpr, NC: tl.constexpr, CELL: tl.constexpr, NREL: tl.constexpr,
                     BN: tl.constexpr, BK: tl.constexpr, OUT_PAD: tl.constexpr, DOT: tl.constexpr,
                     BQ: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    n_tiles = tl.cdiv(N, BQ)
    r = tl.arange(0, BQ)
    ocol = tl.arange(0, OUT_PAD)
    omask = ocol < OUT_DIM
    buf = SCRATCH + pid.to(tl.int64) * SCRATCH_STRIDE  # ping-pong [2, BQ, H]
    for tile in range(pid, n_tiles, nprog):
        q = (tile * BQ + r).to(tl.int64)
        qmask = q < N
        # the last layer is linear: out = sum_t sum_chunks (w_t * h_t[:, chunk]) @ WL[:, chunk]^T
        out = tl.zeros((BQ, OUT_PAD), dtype=tl.float32)
        for t in range(NC):
            _first_layer(buf, P, ROWS, REL, RELCELL, WREL, B1, t, q, qmask, N, H, BQ, BN, CELL, NREL)
            tl.debug_barrier()
            for layer in range(L):
                src = buf + (layer % 2) * (BQ * H)
                dst = buf + ((layer + 1) % 2) * (BQ * H)
                _hidden_layer(src, dst, WH + tl.cast(layer, tl.int64) * H * H, BH + layer * H,
                              H, BQ, BN, BK, DOT)
                tl.debug_barrier()
            last = buf + (L % 2) * (BQ * H)
            wt = tl.load(WTS + tl.cast(t, tl.int64) * N + q, mask=qmask, other=0.0).to(tl.float32)
            for n0 in range(0, H, BN):
                c = n0 + tl.arange(0, BN)
                h = tl.load(last + r[:, None] * H + c[None, :]) * wt[:, None]
                wl_t = tl.load(WL + ocol[None, :] * H + c[:, None], mask=omask[None, :], other=0.0).to(tl.float32)
                out += _dot(h, wl_t, DOT)
            tl.debug_barrier()  # the next corner overwrites the scratch
        out += tl.load(BL + ocol, mask=omask, other=0.0).to(tl.float32)[None, :]
        tl.store(OUT + q[:, None] * OUT_DIM + ocol[None, :], out.to(OUT.dtype.element_ty),
                 mask=qmask[:, None] & omask[None, :])


@triton.autotune(configs=_configs(), key=KEY, reset_to_zero=GRADS)
@triton.jit
def _liif_bwd_kernel(G, P, ROWS, REL, WTS, RELCELL, WREL, B1, WH, BH, WL,
                     DP, DWREL, DB1, DWH, DBH, DWL, DBL, SCRATCH,
                     N, L, OUT_DIM, SCRATCH_STRIDE, NQ,
                     H: tl.constexpr, NC: tl.constexpr, CELL: tl.constexpr, NREL: tl.constexpr,
                     BN: tl.constexpr, BK: tl.constexpr, OUT_PAD: tl.constexpr, DOT: tl.constexpr,
                     BQ: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    n_tiles = tl.cdiv(N, BQ)
    r = tl.arange(0, BQ)
    ocol = tl.arange(0, OUT_PAD)
    omask = ocol < OUT_DIM
    act_stride = BQ * H
    # scratch: activations act[t][l] (NC * (L+1) blocks), then dz ping-pong (2 * NC blocks)
    act = SCRATCH + pid.to(tl.int64) * SCRATCH_STRIDE
    dzb = act + NC * (L + 1) * act_stride
    for tile in range(pid, n_tiles, nprog):
        q = (tile * BQ + r).to(tl.int64)
        qmask = q < N
        # forward, keeping every activation of every corner
        for t in range(NC):
            base = act + t * (L + 1) * act_stride
            _first_layer(base, P, ROWS, REL, RELCELL, WREL, B1, t, q, qmask, N, H, BQ, BN, CELL, NREL)
            tl.debug_barrier()
            for layer in range(L):
                _hidden_layer(base + layer * act_stride, base + (layer + 1) * act_stride,
                              WH + tl.cast(layer, tl.int64) * H * H, BH + layer * H, H, BQ, BN, BK, DOT)
                tl.debug_barrier()
        # last layer, per column chunk: dWL += g^T @ mix, dmix = g @ WL, spread to the corners
        g = tl.load(G + q[:, None] * OUT_DIM + ocol[None, :], mask=qmask[:, None] & omask[None, :],
                    other=0.0).to(tl.float32)
        tl.atomic_add(DBL + ocol, tl.sum(g, axis=0), mask=omask, sem="relaxed")
        for n0 in range(0, H, BN):
            c = n0 + tl.arange(0, BN)
            wl = tl.load(WL + ocol[:, None] * H + c[None, :], mask=omask[:, None], other=0.0).to(tl.float32)
            dmix = _dot(g, wl, DOT)  # [BQ, BN]
            mix = tl.zeros((BQ, BN), dtype=tl.float32)
            for t in range(NC):
                last = tl.load(act + (t * (L + 1) + L) * act_stride + r[:, None] * H + c[None, :])
                wt = tl.load(WTS + tl.cast(t, tl.int64) * N + q, mask=qmask, other=0.0).to(tl.float32)
                mix += wt[:, None] * last
                dz = tl.where(last > 0.0, wt[:, None] * dmix, 0.0)
                tl.store(dzb + t * act_stride + r[:, None] * H + c[None, :], dz)
            tl.atomic_add(DWL + ocol[:, None] * H + c[None, :], _dot(tl.trans(g), mix, DOT), mask=omask[:, None],
                          sem="relaxed")
        tl.debug_barrier()
        # hidden layers, last to first: act[l+1] = relu(act[l] @ W_l^T + b_l)
        for i in range(L):
            layer = L - 1 - i
            cur = dzb + (i % 2) * NC * act_stride
            nxt = dzb + ((i + 1) % 2) * NC * act_stride
            w_off = tl.cast(layer, tl.int64) * H * H
            w_l = WH + w_off
            for n0 in range(0, H, BN):
                ncol = n0 + tl.arange(0, BN)
                db = tl.zeros((BN,), dtype=tl.float32)
                for k0 in range(0, H, BK):
                    kcol = k0 + tl.arange(0, BK)
                    dw = tl.zeros((BN, BK), dtype=tl.float32)
                    for t in range(NC):
                        dzc = tl.load(cur + t * act_stride + r[:, None] * H + ncol[None, :])
                        a = tl.load(act + (t * (L + 1) + layer) * act_stride + r[:, None] * H + kcol[None, :])
                        dw += _dot(tl.trans(dzc), a, DOT)
                    tl.atomic_add(DWH + w_off + ncol[:, None] * H + kcol[None, :], dw, sem="relaxed")
                for t in range(NC):
                    db += tl.sum(tl.load(cur + t * act_stride + r[:, None] * H + ncol[None, :]), axis=0)
                tl.atomic_add(DBH + layer * H + ncol, db, sem="relaxed")
            for t in range(NC):
                for k0 in range(0, H, BK):
                    kcol = k0 + tl.arange(0, BK)
                    acc = tl.zeros((BQ, BK), dtype=tl.float32)
                    for n0 in range(0, H, BN):
                        ncol = n0 + tl.arange(0, BN)
                        dzc = tl.load(cur + t * act_stride + r[:, None] * H + ncol[None, :])
                        w = tl.load(w_l + ncol[:, None] * H + kcol[None, :]).to(tl.float32)
                        acc += _dot(dzc, w, DOT)
                    a = tl.load(act + (t * (L + 1) + layer) * act_stride + r[:, None] * H + kcol[None, :])
                    tl.store(nxt + t * act_stride + r[:, None] * H + kcol[None, :], tl.where(a > 0.0, acc, 0.0))
            tl.debug_barrier()
        # first layer, per column chunk: scatter into dP, rel columns and bias
        first = dzb + (L % 2) * NC * act_stride
        cy = tl.zeros((BQ,), dtype=tl.float32)
        cx = tl.zeros((BQ,), dtype=tl.float32)
        if CELL:
            cy = tl.load(RELCELL + q * 2, mask=qmask, other=0.0).to(tl.float32)
            cx = tl.load(RELCELL + q * 2 + 1, mask=qmask, other=0.0).to(tl.float32)
        for n0 in range(0, H, BN):
            c = n0 + tl.arange(0, BN)
            db1 = tl.zeros((BN,), dtype=tl.float32)
            dwy = tl.zeros((BN,), dtype=tl.float32)
            dwx = tl.zeros((BN,), dtype=tl.float32)
            dcy = tl.zeros((BN,), dtype=tl.float32)
            dcx = tl.zeros((BN,), dtype=tl.float32)
            for t in range(NC):
                dz = tl.load(first + t * act_stride + r[:, None] * H + c[None, :])
                dz = tl.where(qmask[:, None], dz, 0.0)
                tq = tl.cast(t, tl.int64) * N + q
                row = tl.load(ROWS + tq, mask=qmask, other=0)
                tl.atomic_add(DP + row[:, None] * H + c[None, :], dz, mask=qmask[:, None], sem="relaxed")
                ry = tl.load(REL + tq * 2, mask=qmask, other=0.0).to(tl.float32)
                rx = tl.load(REL + tq * 2 + 1, mask=qmask, other=0.0).to(tl.float32)
                db1 += tl.sum(dz, axis=0)
                dwy += tl.sum(dz * ry[:, None], axis=0)
                dwx += tl.sum(dz * rx[:, None], axis=0)
                if CELL:
                    dcy += tl.sum(dz * cy[:, None], axis=0)
                    dcx += tl.sum(dz * cx[:, None], axis=0)
            tl.atomic_add(DB1 + c, db1, sem="relaxed")
            tl.atomic_add(DWREL + c * NREL, dwy, sem="relaxed")
            tl.atomic_add(DWREL + c * NREL + 1, dwx, sem="relaxed")
            if CELL:
                tl.atomic_add(DWREL + c * NREL + 2, dcy, sem="relaxed")
                tl.atomic_add(DWREL + c * NREL + 3, dcx, sem="relaxed")
        tl.debug_barrier()  # the next tile overwrites the scratch


def _programs(n, device):
    """Persistent grid: enough programs to fill the GPU, never more than there are tiles."""
    if interpreting() or device.type != "cuda":
        p = INTERPRETER_PROGRAMS
        return lambda meta: (max(1, min(p, triton.cdiv(n, meta["BQ"]))),), p
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return lambda meta: (max(1, min(triton.cdiv(n, meta["BQ"]), 2 * sms)),), 2 * sms


def _chunks(H, backward=False):
    """(BN, BK) column chunks of the weight tiles. The backward holds more live tiles (dz, the
    activation, dW and the atomics' addresses), so it takes 32-wide chunks: fewer registers
    and spills on sm_90 (scripts/compile_triton.py --all reports both)."""
    b = min(H, 32 if backward else 64)
    return b, b


def check_supported(n1, weights):
    """Raises ValueError unless the MLP fits these kernels (see module docstring)."""
    if len(weights) < 1:
        raise ValueError("triton backend needs at least one hidden layer")
    widths = [n1] + [W.shape[0] for W in weights[:-1]]
    if any(w != n1 for w in widths):
        raise ValueError(f"triton backend needs hidden layers of one width, got {widths}")
    if n1 < 16 or n1 & (n1 - 1):
        raise ValueError(f"triton backend needs a power-of-two hidden width >= 16, got {n1}")
    if weights[-1].shape[0] > OUT_P:
        raise ValueError(f"triton backend supports out_dim <= {OUT_P}, got {weights[-1].shape[0]}")


def _stack_hidden(weights, biases, H, like):
    if len(weights) > 1:
        return torch.stack(list(weights[:-1])).contiguous(), torch.stack(list(biases[:-1])).contiguous()
    return like.new_zeros((1,)), like.new_zeros((1,))  # never read: no hidden-to-hidden layer


def forward(proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl, bl, n_layers, precision):
    """Host launcher: out (N, out_dim). rows/rel/wts: (NC, N[, 2]) corner geometry."""
    NC, N = rows.shape
    H = proj_rows.shape[1]
    out_dim = wl.shape[0]
    out = torch.empty((N, out_dim), device=proj_rows.device, dtype=proj_rows.dtype)
    if N == 0:
        return out
    grid, max_programs = _programs(N, proj_rows.device)
    BN, BK = _chunks(H)
    stride = 2 * BQ_MAX * H
    scratch = torch.empty((max_programs, stride), device=proj_rows.device, dtype=torch.float32)
    cell = relcell is not None
    with device_guard(proj_rows.device):
        _liif_fwd_kernel[grid](
            proj_rows, rows, rel, wts, relcell if cell else rel, w_rel, b1, wh, bh, wl, bl, out, scratch,
            N, n_layers, out_dim, stride, size_class(N),
            H=H, NC=NC, CELL=cell, NREL=w_rel.shape[1], BN=BN, BK=BK, OUT_PAD=OUT_P, DOT=precision)
    return out


def check_deterministic():
    """torch.use_deterministic_algorithms(True): the atomic backward refuses (warns if warn_only)."""
    if not torch.are_deterministic_algorithms_enabled():
        return
    msg = ("liif_query: the triton backward adds gradients with atomics and is not deterministic; "
           "use backend='torch' or 'cpu' (backend='auto' picks one under deterministic mode)")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(msg)
    else:
        raise RuntimeError(msg)


def backward(grad_out, proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl, n_layers, precision):
    """Host launcher: grads of (proj_rows, w_rel, b1, wh, bh, wl, bl), accumulated in fp32."""
    check_deterministic()
    NC, N = rows.shape
    H = proj_rows.shape[1]
    out_dim = wl.shape[0]
    f32 = dict(device=proj_rows.device, dtype=torch.float32)
    grads = [torch.zeros(t.shape, **f32) for t in (proj_rows, w_rel, b1, wh, bh, wl)]
    grads.append(torch.zeros((out_dim,), **f32))
    if N == 0:
        return grads
    grid, max_programs = _programs(N, proj_rows.device)
    BN, BK = _chunks(H, backward=True)
    stride = (NC * (n_layers + 1) + 2 * NC) * BQ_MAX * H  # activations of every corner and layer + dz
    scratch = torch.empty((max_programs, stride), **f32)
    cell = relcell is not None
    with device_guard(proj_rows.device):
        _liif_bwd_kernel[grid](
            grad_out.contiguous(), proj_rows, rows, rel, wts, relcell if cell else rel, w_rel, b1, wh, bh, wl,
            *grads, scratch,
            N, n_layers, out_dim, stride, size_class(N),
            H=H, NC=NC, CELL=cell, NREL=w_rel.shape[1], BN=BN, BK=BK, OUT_PAD=OUT_P, DOT=precision)
    return grads


class LiifQueryTriton(torch.autograd.Function):
    """Autograd wrapper: inputs are flattened rows and the decoder parameters."""

    @staticmethod
    def forward(ctx, proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl, bl, n_layers, precision):
        ctx.save_for_backward(proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl)
        ctx.n_layers, ctx.precision = n_layers, precision
        return forward(proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl, bl, n_layers, precision)

    @staticmethod
    def backward(ctx, grad_out):
        proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl = ctx.saved_tensors
        g = backward(grad_out, proj_rows, rows, rel, wts, relcell, w_rel, b1, wh, bh, wl,
                     ctx.n_layers, ctx.precision)
        dt = proj_rows.dtype
        g = [x.to(dt) for x in g]
        return (g[0], None, None, None, None, g[1], g[2], g[3], g[4], g[5], g[6], None, None)


def liif_query_triton(proj, geometry, relcell, w_rel, b1, weights, biases, precision):
    """proj (B, h, w, H); geometry = (rows, rel, wts) each (NC, N[, 2]); returns (N, out_dim)."""
    B, h, w, H = proj.shape
    check_supported(H, weights)
    rows, rel, wts = geometry
    wh, bh = _stack_hidden(weights, biases, H, proj)
    n_layers = len(weights) - 1
    return LiifQueryTriton.apply(
        proj.reshape(B * h * w, H).contiguous(), rows.contiguous(), rel.contiguous(), wts.contiguous(),
        None if relcell is None else relcell.contiguous(), w_rel.contiguous(), b1.contiguous(), wh, bh,
        weights[-1].contiguous(), biases[-1].contiguous(), n_layers, precision)
