"""RDN encoder (Zhang et al. 2018) with the parameter names of the official LIIF checkpoints.

Config B (LIIF's): 16 residual dense blocks of 8 conv layers, growth 64, G0 = 64.
"""
from types import SimpleNamespace

import torch
import torch.nn as nn

from ..models import register

RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}  # (blocks D, convs per block C, growth G)


class RDBConv(nn.Module):
    def __init__(self, cin, growth, ksize=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, growth, ksize, padding=(ksize - 1) // 2), nn.ReLU())

    def forward(self, x):
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    def __init__(self, g0, growth, n_convs, ksize=3):
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(g0 + i * growth, growth, ksize) for i in range(n_convs)])
        self.LFF = nn.Conv2d(g0 + n_convs * growth, g0, 1)  # local feature fusion

    def forward(self, x):
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    def __init__(self, G0=64, RDNkSize=3, RDNconfig="B", scale=2, no_upsampling=False, n_colors=3):
        super().__init__()
        if RDNconfig not in RDN_CONFIGS:
            raise ValueError(f"RDNconfig must be one of {sorted(RDN_CONFIGS)}, got {RDNconfig!r}")
        self.args = SimpleNamespace(G0=G0, RDNkSize=RDNkSize, RDNconfig=RDNconfig, scale=[scale],
                                    no_upsampling=no_upsampling, n_colors=n_colors)
        k, pad = RDNkSize, (RDNkSize - 1) // 2
        self.D, C, G = RDN_CONFIGS[RDNconfig]
        self.SFENet1 = nn.Conv2d(n_colors, G0, k, padding=pad)
        self.SFENet2 = nn.Conv2d(G0, G0, k, padding=pad)
        self.RDBs = nn.ModuleList([RDB(G0, G, C, k) for _ in range(self.D)])
        self.GFF = nn.Sequential(nn.Conv2d(self.D * G0, G0, 1), nn.Conv2d(G0, G0, k, padding=pad))
        if no_upsampling:
            self.out_dim = G0
            return
        self.out_dim = n_colors
        if scale in (2, 3):
            up = [nn.Conv2d(G0, G * scale * scale, k, padding=pad), nn.PixelShuffle(scale)]
        elif scale == 4:
            up = [nn.Conv2d(G0, G * 4, k, padding=pad), nn.PixelShuffle(2),
                  nn.Conv2d(G, G * 4, k, padding=pad), nn.PixelShuffle(2)]
        else:
            raise ValueError(f"RDN upsampling supports scales 2, 3 and 4, got {scale}")
        self.UPNet = nn.Sequential(*up, nn.Conv2d(G, n_colors, k, padding=pad))

    def forward(self, x):
        shallow = self.SFENet1(x)
        x = self.SFENet2(shallow)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        x = self.GFF(torch.cat(outs, 1)) + shallow
        return x if self.args.no_upsampling else self.UPNet(x)


@register("rdn")
def make_rdn(G0=64, RDNkSize=3, RDNconfig="B", scale=2, no_upsampling=False):
    return RDN(G0, RDNkSize, RDNconfig, scale, no_upsampling)
