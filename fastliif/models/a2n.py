"""A2N: Attention in Attention Network (Chen, Gu, Zhang 2021, arXiv:2104.09497).

Structure (seed 003 and the authors' release; attribute names follow the release so its
state_dicts load with ``load_state_dict``):

    LR -> conv_first 3x3 -> nb x AAB -> trunk_conv 3x3 -> (+ conv_first output)
       -> reconstruction: [nearest x2 -> upconv 3x3 -> pixel attention -> LReLU -> HRconv 3x3 -> LReLU]
          once for x2/x3 (one nearest x2 or x3), twice for x4
       -> conv_last 3x3 -> (+ interpolated LR)

An attention-in-attention block (AAB) runs a 1x1 conv + LReLU, then two branches on the same
features: the attention branch (3x3 -> LReLU -> 1x1 -> sigmoid gives a per-pixel, per-channel
mask that multiplies another 3x3 conv of the input, then a closing 3x3) and the non-attention
branch (a single 3x3). The attention dropout module (ADM: global average pool -> Linear nf->nf/4
-> ReLU -> Linear nf/4->2 -> softmax with temperature t=30) gives each sample dynamic weights
for the two branches, so a block can learn to switch its attention off where it does not help.
The weighted sum goes through LReLU and a 1x1 conv and is added to the block input.

``attn_drop`` (default 0, the paper) adds a stochastic form of that idea for training only:
each sample drops its attention branch with that probability (its non-attention weight becomes
1). In ``eval()`` mode nothing is random.

Parameter count (default nf=40, unf=24, nb=16): one AAB = 2*40*40 (1x1s) + 40*10 + 10*2 (ADM)
+ 3*40*40*9 + 40*40 + 40 (attention branch) + 40*40*9 (non-attention) = 62,860; the whole x4 net
has 1,047,459 parameters and x2/x3 1,036,443 (one reconstruction stage less). The paper reports
1,047K (x4) and 1,036K (x2, x3), so the structure matches exactly.

The global skip adds the bilinearly upsampled LR as the authors' code does (seed 003's prose says
nearest and allows other interpolations: ``skip_mode='nearest'`` gives that). The release was
trained with pixel values in [0, 255]; ``rgb_range=255`` scales [0, 1] inputs internally so those
weights can be used as is.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register

SCALES = (2, 3, 4)


def _conv(cin, cout, k, bias=True):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class PixelAttention(nn.Module):
    """x * sigmoid(1x1 conv(x)) (PAN's pixel attention)."""

    def __init__(self, nf):
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class AttentionBranch(nn.Module):
    def __init__(self, nf, k=3):
        super().__init__()
        self.k1 = _conv(nf, nf, k, bias=False)
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = _conv(nf, nf, k, bias=False)
        self.k4 = _conv(nf, nf, k, bias=False)

    def forward(self, x):
        mask = torch.sigmoid(self.k2(F.leaky_relu(self.k1(x), 0.2)))
        return self.k4(self.k3(x) * mask)


class AAB(nn.Module):
    """Attention-in-attention block; see the module docstring."""

    def __init__(self, nf, reduction=4, t=30.0, attn_drop=0.0):
        super().__init__()
        self.t = t
        self.attn_drop = attn_drop
        self.conv_first = nn.Conv2d(nf, nf, 1, bias=False)
        self.conv_last = nn.Conv2d(nf, nf, 1, bias=False)
        self.ADM = nn.Sequential(
            nn.Linear(nf, nf // reduction, bias=False), nn.ReLU(inplace=True),
            nn.Linear(nf // reduction, 2, bias=False))
        self.attention = AttentionBranch(nf)
        self.non_attention = _conv(nf, nf, 3, bias=False)

    def branch_weights(self, x):
        """(N, 2) softmax weights (attention, non-attention) for features after conv_first."""
        w = torch.softmax(self.ADM(x.mean(dim=(2, 3))) / self.t, dim=1)
        if self.training and self.attn_drop > 0:
            drop = torch.rand(w.shape[0], 1, device=w.device) < self.attn_drop
            w = torch.where(drop, torch.tensor([0.0, 1.0], device=w.device, dtype=w.dtype), w)
        return w

    def forward(self, x):
        y = F.leaky_relu(self.conv_first(x), 0.2)
        w = self.branch_weights(y)
        n = y.shape[0]
        y = self.attention(y) * w[:, 0].view(n, 1, 1, 1) + self.non_attention(y) * w[:, 1].view(n, 1, 1, 1)
        return self.conv_last(F.leaky_relu(y, 0.2)) + x


@register("a2n")
class A2N(nn.Module):
    """A2N super-resolution: (N, in_nc, h, w) in [0, 1] -> (N, out_nc, scale*h, scale*w)."""

    def __init__(self, scale=4, in_nc=3, out_nc=3, nf=40, unf=24, nb=16, reduction=4, t=30.0,
                 attn_drop=0.0, skip_mode="bilinear", rgb_range=1.0):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"A2N supports scales {SCALES}, got {scale!r}")
        if skip_mode not in ("bilinear", "nearest", "bicubic"):
            raise ValueError(f"skip_mode must be 'bilinear', 'nearest' or 'bicubic', got {skip_mode!r}")
        if not 0.0 <= attn_drop <= 1.0:
            raise ValueError(f"attn_drop must be in [0, 1], got {attn_drop}")
        if in_nc != out_nc:
            # The global skip adds the upsampled input to the output channel by channel.
            raise ValueError(f"A2N needs in_nc == out_nc for its global skip, got {in_nc} and {out_nc}")
        self.scale, self.in_nc, self.skip_mode, self.rgb_range = scale, in_nc, skip_mode, rgb_range
        self.conv_first = _conv(in_nc, nf, 3)
        self.AAB_trunk = nn.Sequential(*[AAB(nf, reduction, t, attn_drop) for _ in range(nb)])
        self.trunk_conv = _conv(nf, nf, 3)
        self.upconv1 = _conv(nf, unf, 3)
        self.att1 = PixelAttention(unf)
        self.HRconv1 = _conv(unf, unf, 3)
        if scale == 4:
            self.upconv2 = _conv(unf, unf, 3)
            self.att2 = PixelAttention(unf)
            self.HRconv2 = _conv(unf, unf, 3)
        self.conv_last = _conv(unf, out_nc, 3)

    def _up_stage(self, fea, factor, upconv, att, hrconv):
        fea = upconv(F.interpolate(fea, scale_factor=factor, mode="nearest"))
        fea = F.leaky_relu(att(fea), 0.2)
        return F.leaky_relu(hrconv(fea), 0.2)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_nc:
            raise ValueError(f"A2N expects (N, {self.in_nc}, h, w) input, got shape {tuple(x.shape)}")
        x = x * self.rgb_range
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.AAB_trunk(fea))
        first = 2 if self.scale == 4 else self.scale
        fea = self._up_stage(fea, first, self.upconv1, self.att1, self.HRconv1)
        if self.scale == 4:
            fea = self._up_stage(fea, 2, self.upconv2, self.att2, self.HRconv2)
        align = None if self.skip_mode == "nearest" else False
        skip = F.interpolate(x, scale_factor=self.scale, mode=self.skip_mode, align_corners=align)
        return (self.conv_last(fea) + skip) / self.rgb_range
