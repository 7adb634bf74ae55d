"""EDSR encoders (Lim et al. 2017) with the parameter names of the official LIIF checkpoints.

`edsr-baseline`: 16 residual blocks, 64 features, res_scale 1. With ``no_upsampling=True``
(LIIF's setting) the output is the 64-channel feature map at input resolution. The mean-shift
layers exist only so that official state_dicts load: the official forward does not use them.
"""
import math
from types import SimpleNamespace

import torch
import torch.nn as nn

from ..models import register


def conv3x3(cin, cout, kernel_size=3, bias=True):
    return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv adding/subtracting the DIV2K mean (kept for checkpoint keys)."""

    def __init__(self, rgb_range, rgb_mean=(0.4488, 0.4371, 0.4040), rgb_std=(1.0, 1.0, 1.0), sign=-1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean) / std)
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    def __init__(self, n_feats, kernel_size=3, bias=True, res_scale=1.0):
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(n_feats, n_feats, kernel_size, bias), nn.ReLU(True),
            conv3x3(n_feats, n_feats, kernel_size, bias))
        self.res_scale = res_scale

    def forward(self, x):
        return self.body(x).mul(self.res_scale) + x


class Upsampler(nn.Sequential):
    def __init__(self, scale, n_feats):
        layers = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"EDSR upsampler supports scales 2^n and 3, got {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, n_resblocks=16, n_feats=64, res_scale=1.0, scale=2, no_upsampling=False,
                 rgb_range=1, n_colors=3):
        super().__init__()
        self.args = SimpleNamespace(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale,
                                    scale=[scale], no_upsampling=no_upsampling,
                                    rgb_range=rgb_range, n_colors=n_colors)
        self.sub_mean = MeanShift(rgb_range)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(conv3x3(n_colors, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale=res_scale) for _ in range(n_resblocks)],
                                  conv3x3(n_feats, n_feats))
        if no_upsampling:
            self.out_dim = n_feats
        else:
            self.out_dim = n_colors
            self.tail = nn.Sequential(Upsampler(scale, n_feats), conv3x3(n_feats, n_colors))

    def forward(self, x):
        x = self.head(x)
        x = self.body(x) + x
        return x if self.args.no_upsampling else self.tail(x)


@register("edsr-baseline")
def make_edsr_baseline(n_resblocks=16, n_feats=64, res_scale=1, scale=2, no_upsampling=False, rgb_range=1):
    return EDSR(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)


@register("edsr")
def make_edsr(n_resblocks=32, n_feats=256, res_scale=0.1, scale=2, no_upsampling=False, rgb_range=1):
    return EDSR(n_resblocks, n_feats, res_scale, scale, no_upsampling, rgb_range)
