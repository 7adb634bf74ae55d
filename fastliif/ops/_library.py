"""Fake (meta) kernels and autograd for the C++ operators in torch.ops.fastliif.

The schemas and device kernels are registered by the compiled extension (csrc/); this
module adds what torch.compile and autograd need. Without the extension it does nothing.
"""
import torch

from .. import _ext

REGISTERED = False


def _core_fake(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode, precision="ieee"):
    out_dim = weights[-1].shape[0] if len(weights) else proj.shape[3]
    return proj.new_empty((coord.shape[0], coord.shape[1], out_dim))


def _core_backward_fake(grad_out, proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode,
                        precision="ieee"):
    return (proj.new_empty(proj.shape), w_rel.new_empty(w_rel.shape), b1.new_empty(b1.shape),
            [w.new_empty(w.shape) for w in weights], [b.new_empty(b.shape) for b in biases])


def _core_setup_context(ctx, inputs, output):
    proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode, *rest = inputs
    ctx.n_layers = len(weights)
    ctx.flags = (local_ensemble, cell_decode, *rest)  # rest: the precision, when the caller passed it
    ctx.has_cell = cell is not None
    ctx.save_for_backward(proj, coord, w_rel, b1, *weights, *biases, *([cell] if cell is not None else []))


def _core_backward(ctx, grad_out):
    saved = ctx.saved_tensors
    proj, coord, w_rel, b1 = saved[:4]
    n = ctx.n_layers
    weights, biases = list(saved[4:4 + n]), list(saved[4 + n:4 + 2 * n])
    cell = saved[4 + 2 * n] if ctx.has_cell else None
    g_proj, g_wrel, g_b1, g_w, g_b = torch.ops.fastliif.liif_query_core_backward(
        grad_out.contiguous(), proj, coord, cell, w_rel, b1, weights, biases, *ctx.flags)
    # coord and cell get no gradient (no training recipe needs one; documented)
    # one entry per argument the caller passed (precision may have been left to its default)
    return (g_proj, None, None, g_wrel, g_b1, list(g_w), list(g_b)) + (None,) * (len(ctx.needs_input_grad) - 7)


def _dconv_fake(image, kernel, kernel_size, scale, per_channel):
    N, C, H, W = image.shape
    return image.new_empty((N, C, H * scale, W * scale))


def _dconv_backward_fake(grad_out, image, kernel, kernel_size, scale, per_channel):
    return image.new_empty(image.shape), kernel.new_empty(kernel.shape)


def _dconv_setup_context(ctx, inputs, output):
    image, kernel, kernel_size, scale, per_channel = inputs
    ctx.args = (kernel_size, scale, per_channel)
    ctx.save_for_backward(image, kernel)


def _dconv_backward(ctx, grad_out):
    image, kernel = ctx.saved_tensors
    g_image, g_kernel = torch.ops.fastliif.dynamic_conv_backward(grad_out.contiguous(), image, kernel, *ctx.args)
    return g_image, g_kernel, None, None, None


def register():
    global REGISTERED
    if REGISTERED or not _ext.HAS_EXT:
        return
    torch.library.register_fake("fastliif::liif_query_core")(_core_fake)
    torch.library.register_fake("fastliif::liif_query_core_backward")(_core_backward_fake)
    torch.library.register_autograd("fastliif::liif_query_core", _core_backward, setup_context=_core_setup_context)
    torch.library.register_fake("fastliif::dynamic_conv")(_dconv_fake)
    torch.library.register_fake("fastliif::dynamic_conv_backward")(_dconv_backward_fake)
    torch.library.register_autograd("fastliif::dynamic_conv", _dconv_backward, setup_context=_dconv_setup_context)
    REGISTERED = True


register()
