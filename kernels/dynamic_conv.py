"""Triton kernels of UDVD's per-pixel dynamic convolution (DESIGN.md section 5), forward and backward.

    out[n, c, y*s + i, x*s + j] = sum_{a, b < k} image_zero_padded[n, c, y + a - p, x + b - p]
                                                 * kernel[n, m + (b*k + a)*s*s + i*s + j, y, x]

p = (k - 1) // 2; m = 0 (shared: kernel (N, k*k*s*s, H, W)) or c*k*k*s*s (per_channel: kernel
(N, C*k*k*s*s, H, W)). The op is memory-bound, so every kernel reads each input value once from
DRAM, keeps its accumulators in fp32 registers and writes each result once, with no atomics:

- forward: one program per (LR row n, y; BXO consecutive output columns xo = x*s + j; BC channels).
  Its tile is [BC, SP, BXO] (SP = s rounded up to a power of two, the output rows y*s + i), so the
  output is stored straight into NCHW (N, C, H*s, W*s), row-contiguous, with no pixel_shuffle pass.
  Per tap it loads the kernel slice [SP, BXO] (shared mode: once for all BC channels) and the shifted
  image row [BC, BXO]; the k-row halo is re-read from L1/L2, not DRAM.
- d(kernel): same grid and tile. dout's tile [BC, SP, BXO] is loaded once and kept in registers
  while the k*k taps stream the shifted image rows; shared mode sums over all channels inside the
  program (a loop over channel chunks when C exceeds one block), per_channel mode stores per channel.
- d(image): one program per (row n, yy; BX columns xx; BC channels), tile [BC, BX, SSP] (SSP =
  s*s rounded up to a power of two: all sub-pixels i*s + j at once). Per tap (a, b) it gathers dout
  at the s*s sub-pixels of the source pixel (yy - a + p, xx - b + p) times the kernel values that
  pixel applied there (CARAFE's flipped gather), and reduces over the sub-pixels at the end.

The grid is flat with channel blocks fastest, so the programs of one (row, column block) that share
a kernel slice run side by side and all but the first read it from L2. BC * SP (BC * SSP) is kept
<= 64 and the autotuner only tries column blocks that leave at most 32 (16 for d(image); half in
per_channel mode) tile elements per thread: no register spills on sm_90 for k <= 9, s <= 4. The tap
loops are not unrolled (unrolling the inner one doubled registers and spilled).
Offsets are int64 wherever a product with N, C or the k*k*s*s kernel channels can pass 2^31.
Runs on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1 (fp32, small shapes) for testing.
Inputs are validated by fastliif.ops.dynamic_conv; the host launchers only read shapes.
"""
import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from ._common import device_guard as _on
from ._common import interpreting


def _configs(block):
    """Column-block sizes on a GPU; exactly one configuration under the interpreter (several crash it)."""
    if interpreting():
        return [triton.Config({block: 32 if block == "BXO" else 8}, num_warps=4)]
    small = 32 if block == "BXO" else 16
    sizes = [(small, 2), (small, 4), (2 * small, 4), (2 * small, 8), (4 * small, 4), (4 * small, 8), (8 * small, 8)]
    return [triton.Config({block: b}, num_warps=w) for b, w in sizes]


ROW_BUDGET = 64  # channels x sub-pixel rows of one tile (BC * SP, or BC * SSP for d(image))


def _prune(block, rows, per_thread):
    """Keeps the configurations whose tile [BC, rows, block] holds at most per_thread[PER_CHANNEL]
    elements per thread (so accumulators, loaded tiles and their addresses stay in registers) and
    whose column block is no wider than the row needs."""
    def prune(configs, named_args, **kwargs):
        tile = kwargs["BC"] * kwargs[rows]
        limit = per_thread[bool(kwargs["PER_CHANNEL"])]
        widest = max(min(c.kwargs[block] for c in configs), named_args["WB"])
        keep = [c for c in configs if tile * c.kwargs[block] <= limit * 32 * c.num_warps
                and c.kwargs[block] <= widest]
        return keep or [min(configs, key=lambda c: (tile * c.kwargs[block] / c.num_warps, c.kwargs[block]))]
    return {"early_config_prune": prune}


KEY = ["WB", "K", "S", "BC", "PER_CHANNEL", "ONE_CB"]  # WB: row width bucket (see _width_bucket)


@triton.jit
def _split_pid(H, ncols, nchan):
    """Flat program id -> (n, row, column block, channel block), channel blocks fastest: the
    programs that share a row's kernel slice run side by side and re-read it from L2."""
    pid = tl.program_id(0)
    cb = pid % nchan
    rest = pid // nchan
    xb = rest % ncols
    row = rest // ncols
    n = row // H
    return n, row - n * H, xb, cb


@triton.jit
def _out_tile(xb, y, W, S: tl.constexpr, SP: tl.constexpr, BXO: tl.constexpr):
    """Output columns xo = x*s + j of block xb and the sub-pixel rows i of LR row y: the shared
    index math of the forward and d(kernel) kernels. Returns xo, x, xmask, sub [SP, BXO],
    kmask [SP, BXO], pix (y*W + x) and i."""
    xo = xb * BXO + tl.arange(0, BXO)
    x = xo // S
    j = xo - x * S
    xmask = xo < W * S
    i = tl.arange(0, SP)
    sub = i[:, None] * S + j[None, :]
    kmask = (i < S)[:, None] & xmask[None, :]
    return xo, x, xmask, sub, kmask, y * W + x, i


@triton.autotune(configs=_configs("BXO"), key=KEY, prune_configs_by=_prune("BXO", "SP", (32, 16)))
@triton.jit
def _dc_fwd_kernel(IMG, KER, OUT, C, H, W, WB,
                   K: tl.constexpr, S: tl.constexpr, SP: tl.constexpr, BC: tl.constexpr,
                   PER_CHANNEL: tl.constexpr, ONE_CB: tl.constexpr, BXO: tl.constexpr):
    P = (K - 1) // 2
    SS = S * S
    KKSS = K * K * S * S
    WS = W * S
    n, y, xb, cb = _split_pid(H, tl.cdiv(WS, BXO), tl.cdiv(C, BC))
    n64 = n.to(tl.int64)
    HW = H * W
    xo, x, xmask, sub, kmask, pix, i = _out_tile(xb, y, W, S, SP, BXO)
    c = cb * BC + tl.arange(0, BC)
    cmask = c < C
    nc = n64 * C + c.to(tl.int64)  # [BC] image / output planes
    acc = tl.zeros((BC, SP, BXO), dtype=tl.float32)
    for a in range(K):
        yin = y + a - P
        row_ok = (yin + 0 * x >= 0) & (yin + 0 * x < H)  # a vector: the interpreter mis-types bool scalar & vector
        for b in range(K):
            xin = x + (b - P)
            m = xmask & (xin >= 0) & (xin < W) & row_ok
            v = tl.load(IMG + nc[:, None] * HW + (yin * W + xin)[None, :],
                        mask=cmask[:, None] & m[None, :], other=0.0).to(tl.float32)
            tap = b * K + a
            if PER_CHANNEL:
                ch = nc[:, None, None] * KKSS + (tap * SS + sub)[None, :, :]
                kv = tl.load(KER + ch * HW + pix[None, None, :],
                             mask=cmask[:, None, None] & kmask[None, :, :], other=0.0).to(tl.float32)
                acc += v[:, None, :] * kv
            else:
                ch = n64 * KKSS + tap * SS + sub
                kv = tl.load(KER + ch * HW + pix[None, :], mask=kmask, other=0.0).to(tl.float32)
                acc += v[:, None, :] * kv[None, :, :]
    out_rows = nc[:, None, None] * (H * S) + (y * S + i)[None, :, None]
    tl.store(OUT + out_rows * WS + xo[None, None, :], acc.to(OUT.dtype.element_ty),
             mask=cmask[:, None, None] & kmask[None, :, :])


@triton.autotune(configs=_configs("BXO"), key=KEY, prune_configs_by=_prune("BXO", "SP", (32, 16)))
@triton.jit
def _dc_dkernel_kernel(IMG, GOUT, DKER, C, H, W, WB,
                       K: tl.constexpr, S: tl.constexpr, SP: tl.constexpr, BC: tl.constexpr,
                       PER_CHANNEL: tl.constexpr, ONE_CB: tl.constexpr, BXO: tl.constexpr):
    P = (K - 1) // 2
    SS = S * S
    KKSS = K * K * S * S
    WS = W * S
    n, y, xb, cb = _split_pid(H, tl.cdiv(WS, BXO), tl.cdiv(C, BC) if PER_CHANNEL else 1)
    n64 = n.to(tl.int64)
    HW = H * W
    xo, x, xmask, sub, kmask, pix, i = _out_tile(xb, y, W, S, SP, BXO)
    yrow = (y * S + i)[None, :, None]
    c = cb * BC + tl.arange(0, BC)  # cb is 0 in shared mode
    cmask = c < C
    nc = n64 * C + c.to(tl.int64)
    if PER_CHANNEL or ONE_CB:  # dout's tile stays in registers across the taps
        g = tl.load(GOUT + (nc[:, None, None] * (H * S) + yrow) * WS + xo[None, None, :],
                    mask=cmask[:, None, None] & kmask[None, :, :], other=0.0).to(tl.float32)
    for a in range(K):
        yin = y + a - P
        row_ok = (yin + 0 * x >= 0) & (yin + 0 * x < H)  # a vector: the interpreter mis-types bool scalar & vector
        for b in range(K):
            xin = x + (b - P)
            m = xmask & (xin >= 0) & (xin < W) & row_ok
            tap = b * K + a
            if PER_CHANNEL:
                v = tl.load(IMG + nc[:, None] * HW + (yin * W + xin)[None, :],
                            mask=cmask[:, None] & m[None, :], other=0.0).to(tl.float32)
                ch = nc[:, None, None] * KKSS + (tap * SS + sub)[None, :, :]
                tl.store(DKER + ch * HW + pix[None, None, :], (g * v[:, None, :]).to(DKER.dtype.element_ty),
                         mask=cmask[:, None, None] & kmask[None, :, :])
            else:
                if ONE_CB:
                    v = tl.load(IMG + nc[:, None] * HW + (yin * W + xin)[None, :],
                                mask=cmask[:, None] & m[None, :], other=0.0).to(tl.float32)
                    d = tl.sum(g * v[:, None, :], axis=0)
                else:
                    d = tl.zeros((SP, BXO), dtype=tl.float32)
                    for c0 in range(0, C, BC):
                        cc = c0 + tl.arange(0, BC)
                        ccmask = cc < C
                        ncc = n64 * C + cc.to(tl.int64)
                        gc = tl.load(GOUT + (ncc[:, None, None] * (H * S) + yrow) * WS + xo[None, None, :],
                                     mask=ccmask[:, None, None] & kmask[None, :, :], other=0.0).to(tl.float32)
                        v = tl.load(IMG + ncc[:, None] * HW + (yin * W + xin)[None, :],
                                    mask=ccmask[:, None] & m[None, :], other=0.0).to(tl.float32)
                        d += tl.sum(gc * v[:, None, :], axis=0)
                ch = n64 * KKSS + tap * SS + sub
                tl.store(DKER + ch * HW + pix[None, :], d.to(DKER.dtype.element_ty), mask=kmask)


@triton.autotune(configs=_configs("BX"), key=KEY, prune_configs_by=_prune("BX", "SSP", (16, 8)))
@triton.jit
def _dc_dimage_kernel(GOUT, KER, DIMG, C, H, W, WB,
                      K: tl.constexpr, S: tl.constexpr, SSP: tl.constexpr, BC: tl.constexpr,
                      PER_CHANNEL: tl.constexpr, ONE_CB: tl.constexpr, BX: tl.constexpr):
    P = (K - 1) // 2
    SS = S * S
    KKSS = K * K * S * S
    n, yy, xb, cb = _split_pid(H, tl.cdiv(W, BX), tl.cdiv(C, BC))
    n64 = n.to(tl.int64)
    HW = H * W
    WS = W * S
    xx = xb * BX + tl.arange(0, BX)
    xxmask = xx < W
    c = cb * BC + tl.arange(0, BC)
    cmask = c < C
    nc = n64 * C + c.to(tl.int64)
    sub = tl.arange(0, SSP)  # sub-pixel i*s + j
    i = sub // S
    j = sub - i * S
    smask = sub < SS
    acc = tl.zeros((BC, BX, SSP), dtype=tl.float32)
    for a in range(K):
        ys = yy - a + P  # the LR pixel whose tap (a, b) reads (yy, xx)
        row_ok = (ys + 0 * xx >= 0) & (ys + 0 * xx < H)  # a vector (see _dc_fwd_kernel)
        grow = nc[:, None, None] * (H * S) + (ys * S + i)[None, None, :]  # dout rows ys*s + i
        for b in range(K):
            xs = xx - (b - P)
            m = xxmask & (xs >= 0) & (xs < W) & row_ok
            m2 = m[:, None] & smask[None, :]  # [BX, SSP]
            gcol = (xs * S)[:, None] + j[None, :]  # dout columns xs*s + j
            gv = tl.load(GOUT + grow * WS + gcol[None, :, :],
                         mask=cmask[:, None, None] & m2[None, :, :], other=0.0).to(tl.float32)
            src = (ys * W + xs)[:, None]
            tap = b * K + a
            if PER_CHANNEL:
                ch = nc[:, None, None] * KKSS + (tap * SS + sub)[None, None, :]
                kv = tl.load(KER + ch * HW + src[None, :, :],
                             mask=cmask[:, None, None] & m2[None, :, :], other=0.0).to(tl.float32)
                acc += gv * kv
            else:
                ch = n64 * KKSS + (tap * SS + sub)[None, :]
                kv = tl.load(KER + ch * HW + src, mask=m2, other=0.0).to(tl.float32)
                acc += gv * kv[None, :, :]
    res = tl.sum(acc, axis=2)
    tl.store(DIMG + nc[:, None] * HW + yy * W + xx[None, :], res.to(DIMG.dtype.element_ty),
             mask=cmask[:, None] & xxmask[None, :])


def _p2(v):
    return triton.next_power_of_2(max(int(v), 1))


def _block_c(C, rows, cap):
    """Channels per program: all of them up to `cap` and 64 // rows (the tile's other register axis;
    8 under the interpreter, so that the tests cross channel blocks)."""
    return min(_p2(C), cap, max(1, ROW_BUDGET // rows), 8 if interpreting() else cap)


def _width_bucket(cols):
    """Columns per row rounded up to a power of two, capped at 512: part of the autotune key (an
    unused kernel argument), so narrow and wide maps each get their own column block."""
    return min(_p2(cols), 512)


def _empty(shape, like):
    """Every launcher output is allocated here (tests swap in a NaN fill to catch unwritten elements)."""
    return torch.empty(shape, device=like.device, dtype=like.dtype)


def forward(image, kernel, kernel_size, scale, per_channel):
    """out (N, C, H*s, W*s) in image's dtype; image and kernel contiguous."""
    N, C, H, W = image.shape
    k, s = kernel_size, scale
    out = _empty((N, C, H * s, W * s), image)
    if out.numel() == 0:
        return out
    BC = _block_c(C, _p2(s), 16 if per_channel else 64)
    grid = lambda meta: (N * H * triton.cdiv(W * s, meta["BXO"]) * triton.cdiv(C, BC),)  # noqa: E731
    with _on(image.device):
        _dc_fwd_kernel[grid](image, kernel, out, C, H, W, _width_bucket(W * s), K=k, S=s, SP=_p2(s), BC=BC,
                             PER_CHANNEL=per_channel, ONE_CB=C <= BC)
    return out


def backward_kernel(grad_out, image, kernel_size, scale, per_channel):
    """d(kernel), shaped like the kernel, in image's dtype; grad_out and image contiguous."""
    N, C, H, W = image.shape
    k, s = kernel_size, scale
    KC = (C if per_channel else 1) * k * k * s * s
    if N * H * W == 0 or C == 0:  # nothing to gather (shared mode: an empty sum over channels)
        return torch.zeros((N, KC, H, W), device=image.device, dtype=image.dtype)
    dker = _empty((N, KC, H, W), image)
    BC = _block_c(C, _p2(s), 16 if per_channel else 64)
    grid = lambda meta: (N * H * triton.cdiv(W * s, meta["BXO"]) * (triton.cdiv(C, BC) if per_channel else 1),)  # noqa
    with _on(image.device):
        _dc_dkernel_kernel[grid](image, grad_out, dker, C, H, W, _width_bucket(W * s), K=k, S=s, SP=_p2(s), BC=BC,
                                 PER_CHANNEL=per_channel, ONE_CB=C <= BC)
    return dker


def backward_image(grad_out, kernel, image_shape, kernel_size, scale, per_channel):
    """d(image) (N, C, H, W) in kernel's dtype; grad_out and kernel contiguous."""
    N, C, H, W = image_shape
    k, s = kernel_size, scale
    dimg = _empty((N, C, H, W), kernel)
    if dimg.numel() == 0:
        return dimg
    BC = _block_c(C, _p2(s * s), 16 if per_channel else 64)
    grid = lambda meta: (N * H * triton.cdiv(W, meta["BX"]) * triton.cdiv(C, BC),)  # noqa: E731
    with _on(kernel.device):
        _dc_dimage_kernel[grid](grad_out, kernel, dimg, C, H, W, _width_bucket(W), K=k, S=s, SSP=_p2(s * s), BC=BC,
                                PER_CHANNEL=per_channel, ONE_CB=C <= BC)
    return dimg


class DynamicConvTriton(torch.autograd.Function):
    """Autograd wrapper: (image, kernel, kernel_size, scale, per_channel) -> (N, C, H*s, W*s)."""

    @staticmethod
    def forward(ctx, image, kernel, kernel_size, scale, per_channel):
        image, kernel = image.contiguous(), kernel.contiguous()
        ctx.save_for_backward(image, kernel)
        ctx.args = (kernel_size, scale, per_channel)
        return forward(image, kernel, kernel_size, scale, per_channel)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        image, kernel = ctx.saved_tensors
        k, s, per_channel = ctx.args
        grad_out = grad_out.to(image.dtype).contiguous()
        dimg = dker = None
        if ctx.needs_input_grad[0]:
            dimg = backward_image(grad_out, kernel, image.shape, k, s, per_channel)
        if ctx.needs_input_grad[1]:
            dker = backward_kernel(grad_out, image, k, s, per_channel)
        return dimg, dker, None, None, None


def dynamic_conv_triton(image, kernel, kernel_size, scale, per_channel):
    """image (N, C, H, W), kernel (N, [C*]k*k*s*s, H, W) -> (N, C, H*s, W*s); differentiable in both."""
    return DynamicConvTriton.apply(image, kernel, kernel_size, scale, bool(per_channel))
