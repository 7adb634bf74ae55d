"""fastliif.ops.dynamic_conv: UDVD's per-pixel dynamic convolution (DESIGN.md section 5)."""
import torch
import torch.nn.functional as F

from . import _library  # noqa: F401  (fake kernels + autograd for torch.ops.fastliif)
from ._backends import resolve

MODES = ("shared", "per_channel")


def _check(image, kernel, kernel_size, scale, mode):
    def fail(msg, exc=ValueError):
        raise exc(f"dynamic_conv: {msg}")

    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        fail(f"image must be a (N, C, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 4:
        fail(f"kernel must be a (N, K, H, W) tensor, got {getattr(kernel, 'shape', type(kernel))}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        fail(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        fail(f"scale must be a positive integer, got {scale!r}")
    if mode not in MODES:
        fail(f"mode must be one of {MODES}, got {mode!r}")
    N, C, H, W = image.shape
    if kernel.shape[0] != N or kernel.shape[2:] != image.shape[2:]:
        fail(f"kernel {tuple(kernel.shape)} must share batch and spatial size with image {tuple(image.shape)}")
    taps = kernel_size * kernel_size * scale * scale
    want = taps if mode == "shared" else C * taps
    if kernel.shape[1] != want:
        what = "k*k*s*s" if mode == "shared" else "C*k*k*s*s"
        fail(f"kernel has {kernel.shape[1]} channels; mode {mode!r} with k={kernel_size}, s={scale}"
             f"{'' if mode == 'shared' else f', C={C}'} needs {what} = {want}")
    if not image.is_floating_point():
        fail(f"image must be floating point, got {image.dtype}", TypeError)
    if kernel.dtype != image.dtype:
        fail(f"kernel has dtype {kernel.dtype} but image has {image.dtype}", TypeError)
    if kernel.device != image.device:
        fail(f"kernel is on {kernel.device} but image is on {image.device}")


def _torch_forward(image, kernel, k, s, per_channel):
    """One shifted multiply-add per tap, no unfolded copy of the image."""
    N, C, H, W = image.shape
    p = (k - 1) // 2
    padded = F.pad(image, [p, p, p, p])
    kern = kernel.view(N, C if per_channel else 1, k * k, s * s, H, W)
    out = None
    for a in range(k):
        for b in range(k):
            term = padded[:, :, a:a + H, b:b + W].unsqueeze(2) * kern[:, :, b * k + a]  # (N, C, s*s, H, W)
            out = term if out is None else out + term
    out = out.reshape(N, C * s * s, H, W)
    return F.pixel_shuffle(out, s) if s > 1 else out


class _TorchDynamicConv(torch.autograd.Function):
    """The torch backend with a hand-written backward: autograd of the per-tap forward would
    zero-fill a full-size gradient for every tap slice (k*k of them); this writes each tap's
    kernel-gradient slice once and shift-adds each tap's image gradient into one padded buffer.
    The backward is made of differentiable ops, so double backward still works."""

    @staticmethod
    def forward(ctx, image, kernel, k, s, per_channel):
        ctx.save_for_backward(image, kernel)
        ctx.k, ctx.s, ctx.per_channel = k, s, per_channel
        return _torch_forward(image, kernel, k, s, per_channel)

    @staticmethod
    def backward(ctx, grad):
        image, kernel = ctx.saved_tensors
        k, s, per_channel = ctx.k, ctx.s, ctx.per_channel
        N, C, H, W = image.shape
        p, ss, groups = (k - 1) // 2, s * s, C if per_channel else 1
        g = (F.pixel_unshuffle(grad, s) if s > 1 else grad).reshape(N, C, ss, H, W)
        kern = kernel.view(N, groups, k * k, ss, H, W)
        d_image = d_kernel = None
        if ctx.needs_input_grad[1]:
            padded = F.pad(image, [p, p, p, p])
            d_kernel = kernel.new_empty(N, groups, k * k, ss, H, W)
            for tap in range(k * k):
                b, a = divmod(tap, k)
                prod = g * padded[:, :, a:a + H, b:b + W].unsqueeze(2)  # (N, C, s*s, H, W)
                d_kernel[:, :, tap] = prod if per_channel else prod.sum(1, keepdim=True)
            d_kernel = d_kernel.view(kernel.shape)
        if ctx.needs_input_grad[0]:
            d_padded = image.new_zeros(N, C, H + 2 * p, W + 2 * p)
            for tap in range(k * k):
                b, a = divmod(tap, k)
                d_padded[:, :, a:a + H, b:b + W] += (g * kern[:, :, tap]).sum(2)
            d_image = d_padded[:, :, p:p + H, p:p + W]
        return d_image, d_kernel, None, None, None


def dynamic_conv_torch(image, kernel, kernel_size, scale, per_channel):
    """`torch` backend: per-tap shifted multiply-adds forward and backward, any device and dtype."""
    N, C, H, W = image.shape
    if image.numel() == 0 or kernel.numel() == 0:  # pixel_shuffle's backward rejects empty batches
        return image.new_zeros((N, C, H * scale, W * scale)) + 0 * (image.sum() + kernel.sum())
    return _TorchDynamicConv.apply(image, kernel, kernel_size, scale, per_channel)


def dynamic_conv(image, kernel, *, kernel_size, scale=1, mode="shared", backend="auto"):
    """Per-pixel (and per-sub-pixel) dynamic convolution with zero padding.

    out[n, c, y*s + i, x*s + j] = sum_{a, b < k} image[n, c, y + a - p, x + b - p]
                                                 * kernel[n, m + (b*k + a)*s*s + i*s + j, y, x]
    with p = (k - 1) // 2, m = 0 in ``shared`` mode (kernel (N, k*k*s*s, H, W), one kernel for
    every channel, UDVD) and m = c*k*k*s*s in ``per_channel`` mode (kernel (N, C*k*k*s*s, H, W)).
    The tap order b*k + a and the pixel_shuffle sub-pixel order are those of UDVD's PixelConv.

    Returns (N, C, H*s, W*s). Gradients flow to both image and kernel.
    """
    _check(image, kernel, kernel_size, scale, mode)
    name = resolve(backend, image.device, image.dtype, op="dynamic_conv")
    per_channel = mode == "per_channel"
    if name in ("cpu", "cuda"):  # one op; the dispatcher runs the tensors' device kernel (csrc/cpu, csrc/cuda)
        return torch.ops.fastliif.dynamic_conv(image, kernel, kernel_size, scale, per_channel)
    if name == "triton":
        from ..kernels.dynamic_conv import dynamic_conv_triton  # imported only when used
        return dynamic_conv_triton(image, kernel, kernel_size, scale, per_channel)
    return dynamic_conv_torch(image, kernel, kernel_size, scale, per_channel)


__all__ = ["dynamic_conv", "dynamic_conv_torch", "MODES"]
