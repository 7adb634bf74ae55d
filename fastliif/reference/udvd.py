"""Reference UDVD (Unified Dynamic convolutional network for Variational Degradations).

The layer structure and attribute names follow the seed's reference code, so state_dict keys
match it: an SRMD-style input (image 3 + PCA kernel maps 15 + noise map 1 = 19 channels), an
EDSR-style body (15 residual blocks of 128 channels, res_scale 0.1, global skip), then three
dynamic-convolution stages: ``UpDyConv`` (x2 upsampling, per-pixel 5x5 kernels for each of
the 4 sub-pixels) and ``ComDyConv1``/``ComDyConv2`` (no upsampling, per-pixel 5x5 kernels).
Each stage adds a predicted residual to the dynamic convolution of its input image.

The dynamic convolution is the plain-PyTorch ``PixelConv`` of
:mod:`fastliif.reference.dynamic_conv` (depthwise: one kernel for all three colour channels).
"""
import torch
import torch.nn as nn

from ..models import register
from .dynamic_conv import PixelConv

IMAGE_CHANNELS = 3
KERNEL_CHANNELS = 15  # PCA projection of the degradation blur kernel
NOISE_CHANNELS = 1
N_FEATS = 128
N_RESBLOCKS = 15
RES_SCALE = 0.1
DYNAMIC_KERNEL_SIZE = 5


class ResBlock(nn.Module):
    """EDSR residual block without batch norm: ``inputs + conv(inputs) * res_scale``."""

    def __init__(self, channels, kernel_size=3, res_scale=1.0):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, 1, padding),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size, 1, padding),
        )
        self.res_scale = res_scale

    def forward(self, inputs):
        return inputs + self.conv(inputs) * self.res_scale


def _image_conv():
    """Three 3x3 convolutions lifting the RGB image to 32 channels (both stage types)."""
    return nn.Sequential(
        nn.Conv2d(IMAGE_CHANNELS, 16, 3, 1, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, 3, 1, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, 1, 1),
    )


class CommonDynamicConv(nn.Module):
    """Non-upsampling dynamic-convolution stage.

    ``forward(image, features)``: image (N, 3, 2H, 2W) (the previous stage's output),
    features (N, 128, H, W) (the body); returns (N, 3, 2H, 2W). The body features are
    brought to the image resolution with a pixel shuffle (128 -> 32 channels) and a 1x1 conv.
    """

    pixel_conv_class = PixelConv  # the fused subclass swaps in its own (no parameters, same keys)

    def __init__(self):
        super().__init__()
        self.image_conv = _image_conv()
        self.feat_conv = nn.Sequential(
            nn.PixelShuffle(2),
            nn.Conv2d(N_FEATS // 4, N_FEATS, 1),
        )
        self.feat_residual = nn.Sequential(
            nn.Conv2d(32 + N_FEATS, 16, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, IMAGE_CHANNELS, 3, 1, 1),
        )
        self.feat_kernel = nn.Conv2d(32 + N_FEATS, DYNAMIC_KERNEL_SIZE ** 2, 3, 1, 1)
        self.pixel_conv = self.pixel_conv_class(scale=1, depthwise=True)

    def forward(self, image, features):
        image_conv = self.image_conv(image)
        features = self.feat_conv(features)
        cat_inputs = torch.cat([image_conv, features], 1)
        kernel = self.feat_kernel(cat_inputs)
        output = self.pixel_conv(image, kernel)
        residual = self.feat_residual(cat_inputs)
        return output + residual


class UpDynamicConv(nn.Module):
    """x2 upsampling dynamic-convolution stage.

    ``forward(image, features)``: image (N, 3, H, W), features (N, 128, H, W); returns
    (N, 3, 2H, 2W). Each LR pixel gets one 5x5 kernel per output sub-pixel (100 channels).
    """

    pixel_conv_class = PixelConv

    def __init__(self):
        super().__init__()
        self.image_conv = _image_conv()
        self.feat_residual = nn.Sequential(
            nn.Conv2d(32 + N_FEATS, 64, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.PixelShuffle(upscale_factor=2),
            nn.Conv2d(16, IMAGE_CHANNELS, 3, 1, 1),
        )
        self.feat_kernel = nn.Conv2d(32 + N_FEATS, DYNAMIC_KERNEL_SIZE ** 2 * 4, 3, 1, 1)
        self.pixel_conv = self.pixel_conv_class(scale=2, depthwise=True)

    def forward(self, image, features):
        image_conv = self.image_conv(image)
        cat_inputs = torch.cat([image_conv, features], 1)
        kernel = self.feat_kernel(cat_inputs)
        output = self.pixel_conv(image, kernel)
        residual = self.feat_residual(cat_inputs)
        return output + residual


def check_udvd_inputs(image, kernel, noise):
    """ValueError unless image (N,3,H,W), kernel (N,15,H,W) and noise (N,1,H,W) line up."""
    named = (("image", image, IMAGE_CHANNELS), ("kernel", kernel, KERNEL_CHANNELS), ("noise", noise, NOISE_CHANNELS))
    for name, tensor, channels in named:
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            raise ValueError(f"UDVD: {name} must be a (N, {channels}, H, W) tensor, "
                             f"got {getattr(tensor, 'shape', type(tensor).__name__)}")
        if tensor.shape[1] != channels:
            raise ValueError(f"UDVD: channels of {name} should be {channels}, not {tensor.shape[1]}")
    n, _, h, w = image.shape
    for name, tensor, _ in named[1:]:
        if tensor.shape[0] != n or tuple(tensor.shape[2:]) != (h, w):
            raise ValueError(f"UDVD: {name} {tuple(tensor.shape)} must share batch and spatial size with "
                             f"image {tuple(image.shape)}")


@register("udvd-reference")
class UDVD(nn.Module):
    """The seed's UDVD (fixed configuration, x2).

    ``forward(image, kernel, noise)`` with image (N, 3, H, W), kernel (N, 15, H, W) PCA maps of
    the blur kernel and noise (N, 1, H, W) returns ``(output1, output2, output3)``, each
    (N, 3, 2H, 2W): the upsampling stage and the two refinement stages (multi-stage loss).
    """

    up_class = UpDynamicConv  # stage classes; the fused subclass overrides them
    common_class = CommonDynamicConv

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(IMAGE_CHANNELS + KERNEL_CHANNELS + NOISE_CHANNELS, N_FEATS, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlock(N_FEATS, 3, RES_SCALE) for _ in range(N_RESBLOCKS)])
        self.UpDyConv = self.up_class()
        self.ComDyConv1 = self.common_class()
        self.ComDyConv2 = self.common_class()

    def forward(self, image, kernel, noise):
        check_udvd_inputs(image, kernel, noise)
        inputs = torch.cat([image, kernel, noise], 1)
        head = self.head(inputs)
        body = self.body(head) + head
        output1 = self.UpDyConv(image, body)
        output2 = self.ComDyConv1(output1, body)
        output3 = self.ComDyConv2(output2, body)
        return output1, output2, output3


__all__ = ["ResBlock", "CommonDynamicConv", "UpDynamicConv", "UDVD", "check_udvd_inputs"]
