"""SRCNN (Dong et al. 2014/2016), the 9-1-5 network with 64 and 32 filters, on RGB.

SRCNN refines an image that is already at the target size. So that every fixed-scale model in
fastliif has the same interface (LR (N, C, h, w) in [0, 1] -> (N, C, scale*h, scale*w)), this
module first upsamples its input with PyTorch bicubic interpolation (``align_corners=False``,
a = -0.75, not MATLAB's imresize kernel; no clamping), then applies
conv 9x9 (C->64) -> ReLU -> conv 1x1 (64->32) -> ReLU -> conv 5x5 (32->C).
The paper's convolutions are unpadded (the output shrinks by 12 pixels); here they are
zero-padded (4, 0, 2) so the output keeps the upsampled size. ``scale=1`` skips the
interpolation (the paper's setting when the caller upsamples itself).

Parameters for C=3: 3*64*81 + 64 + 64*32 + 32 + 32*3*25 + 3 = 20,099.
"""
import torch.nn as nn
import torch.nn.functional as F

from . import register


@register("srcnn")
class SRCNN(nn.Module):
    def __init__(self, scale=4, num_channels=3, n1=64, n2=32, f1=9, f2=1, f3=5):
        super().__init__()
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"SRCNN scale must be an integer >= 1, got {scale!r}")
        for f in (f1, f2, f3):
            if f % 2 != 1:
                raise ValueError(f"SRCNN filter sizes must be odd to keep the image size, got {(f1, f2, f3)}")
        self.scale, self.num_channels = scale, num_channels
        self.conv1 = nn.Conv2d(num_channels, n1, f1, padding=f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.conv3 = nn.Conv2d(n2, num_channels, f3, padding=f3 // 2)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise ValueError(f"SRCNN expects (N, {self.num_channels}, h, w) input, got shape {tuple(x.shape)}")
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)
