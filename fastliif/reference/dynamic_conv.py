"""Reference per-pixel dynamic convolution: the UDVD seed's PixelConv (DESIGN.md section 5).

out[n, c, y*s + i, x*s + j] = sum_{a, b < k} image_padded[n, c, y + a - p, x + b - p]
                                             * kernel[n, (b*k + a) * s*s + i*s + j, y, x]

with zero padding p = (k - 1) // 2. The tap order is TRANSPOSED (b*k + a: the seed unfolds
rows then columns and permutes the two window axes) and sub-pixels follow pixel_shuffle.
"""
import math

import torch.nn as nn
import torch.nn.functional as F


def pixel_conv_reference(feature, kernel, scale, depthwise=True):
    """The seed's PixelConv.forward as a function (unfold + permute + batched matmul)."""
    NF, CF, HF, WF = feature.shape
    NK, KC, HK, WK = kernel.shape
    if (NF, HF, WF) != (NK, HK, WK):
        raise ValueError(f"PixelConv: feature {tuple(feature.shape)} and kernel {tuple(kernel.shape)} "
                         "must share batch and spatial size")
    if depthwise:
        ink, outk = CF, 1
        ksize = math.isqrt(KC // scale**2)
    else:
        if CF != 1:  # the seed's matmul only lines up for one channel
            raise ValueError(f"PixelConv(depthwise=False) is defined for 1-channel features only, got {CF}; "
                             "use fastliif.ops.dynamic_conv(mode='per_channel') for per-channel kernels")
        ink, outk = 1, CF
        ksize = math.isqrt(KC // CF // scale**2)
    if ksize * ksize * scale**2 * outk != KC:
        raise ValueError(f"PixelConv: kernel has {KC} channels, not k*k*s*s{'' if depthwise else '*C'} "
                         f"for scale {scale}")
    pad = (ksize - 1) // 2
    feat = F.pad(feature, [pad, pad, pad, pad])
    feat = feat.unfold(2, ksize, 1).unfold(3, ksize, 1)  # (N, C, H, W, k_a, k_b)
    feat = feat.permute(0, 2, 3, 1, 5, 4).contiguous().reshape(NF, HF, WF, ink, -1)
    kern = kernel.permute(0, 2, 3, 1).reshape(NK, HK, WK, ksize * ksize, scale**2 * outk)
    out = feat.matmul(kern).permute(0, 3, 4, 1, 2).reshape(NK, -1, HF, WF)
    return F.pixel_shuffle(out, scale) if scale > 1 else out


def dynamic_conv_reference(image, kernel, kernel_size, scale=1, mode="shared"):
    """The op's semantics in plain PyTorch via unfold, both modes (the oracle of the tests).

    shared: kernel (N, k*k*s*s, H, W), one kernel for every channel (UDVD).
    per_channel: kernel (N, C*k*k*s*s, H, W), channel c uses kernel channels
    [c*k*k*s*s, (c+1)*k*k*s*s) with the same (tap, sub-pixel) order as shared.
    """
    N, C, H, W = image.shape
    k, s = kernel_size, scale
    p = (k - 1) // 2
    cols = F.unfold(image, k, padding=p).view(N, C, k, k, H, W)  # [.., a (row), b (col), y, x]
    cols = cols.transpose(2, 3).reshape(N, C, k * k, 1, H, W)  # tap = b*k + a
    if mode == "shared":
        kern = kernel.view(N, 1, k * k, s * s, H, W)
    else:
        kern = kernel.view(N, C, k * k, s * s, H, W)
    out = (cols * kern).sum(dim=2).reshape(N, C * s * s, H, W)  # (N, C, s*s, H, W)
    return F.pixel_shuffle(out, s) if s > 1 else out


class PixelConv(nn.Module):
    """The seed's PixelConv module (depthwise=True is UDVD's setting)."""

    def __init__(self, scale=2, depthwise=False):
        super().__init__()
        self.scale = scale
        self.depthwise = depthwise

    def forward(self, feature, kernel):
        return pixel_conv_reference(feature, kernel, self.scale, self.depthwise)
