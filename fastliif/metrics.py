"""PSNR and SSIM with the SR papers' protocols, batched: (N, C, H, W) float images in [0, 1] in,
one value per image (a float64 tensor of shape (N,)) out.

Protocols (the official LIIF ``utils.calc_psnr``):

- ``None``: every channel, no border removed.
- ``'div2k'``: RGB, ``shave = scale + 6`` pixels removed on each border.
- ``'benchmark'``: luma only, ``shave = scale``. The RGB difference is weighted by LIIF's
  ``(65.738, 129.057, 25.064) / 256``, which are MATLAB ``rgb2ycbcr``'s BT.601 luma
  coefficients ``(65.481, 128.553, 24.966) / 255`` rescaled by 256/255 and rounded (the PSNRs
  differ by < 1e-4 dB). One-channel images are taken as luma already, as LIIF does.

The official code evaluates integer scales only; a fractional scale shaves ``ceil(scale)``.

SSIM (Wang et al. 2004, as the usual SR evaluation scripts): on MATLAB-style Y
(:func:`rgb_to_y`) in 0-255 units, 11x11 Gaussian window with sigma 1.5, C1 = (0.01*255)^2,
C2 = (0.03*255)^2, population (not sample) statistics, 'valid' filtering (no padding), mean
of the SSIM map; the border is shaved first as for PSNR. Equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)`` on the same Y planes. Everything is computed in float64.
"""
import math
import numbers

import torch
import torch.nn.functional as F

__all__ = ["PROTOCOLS", "psnr", "ssim", "rgb_to_y", "shave_for"]

PROTOCOLS = (None, "div2k", "benchmark")

# Official LIIF calc_psnr luma weights for the 'benchmark' PSNR (applied to the RGB difference).
LIIF_Y_WEIGHTS = (65.738 / 256, 129.057 / 256, 25.064 / 256)
# MATLAB rgb2ycbcr (ITU-R BT.601, studio swing): Y = 16 + 65.481 R + 128.553 G + 24.966 B.
MATLAB_Y_COEFFS = (65.481, 128.553, 24.966)
MATLAB_Y_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def shave_for(protocol, scale=1):
    """Border width removed on each side under ``protocol`` at ``scale``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    if protocol is None:
        return 0
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    base = math.ceil(scale - 1e-9)  # integer scales exactly as LIIF; fractional ones rounded up
    return base + 6 if protocol == "div2k" else base


def _check_image(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor with values in [0, 1], got {x.dtype}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")


def _check_pair(sr, hr):
    _check_image(sr, "sr")
    _check_image(hr, "hr")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")


def _shave(x, shave, min_size, what):
    h, w = x.shape[-2:]
    if h - 2 * shave < min_size or w - 2 * shave < min_size:
        raise ValueError(f"{what}: a {h}x{w} image is too small: after shaving {shave} pixels per border "
                         f"it must be at least {min_size}x{min_size}")
    return x[..., shave:h - shave, shave:w - shave] if shave else x


def rgb_to_y(x):
    """MATLAB ``rgb2ycbcr`` luma of RGB in [0, 1]: ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``.

    ``x``: (..., 3, H, W) floating tensor; returns (..., 1, H, W) in [16/255, 235/255], same dtype.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects a (..., 3, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not x.is_floating_point():
        raise TypeError(f"rgb_to_y expects a floating tensor in [0, 1], got {x.dtype}")
    r, g, b = x.unbind(-3)
    y = MATLAB_Y_OFFSET + MATLAB_Y_COEFFS[0] * r + MATLAB_Y_COEFFS[1] * g + MATLAB_Y_COEFFS[2] * b
    return (y / 255.0).unsqueeze(-3)


def psnr(sr, hr, protocol=None, scale=1):
    """Per-image PSNR in dB (peak 1) of ``sr`` against ``hr``, both (N, C, H, W) in [0, 1].

    Identical images give ``inf``.
    """
    _check_pair(sr, hr)
    shave = shave_for(protocol, scale)
    diff = sr.double() - hr.double()
    if protocol == "benchmark" and diff.shape[1] == 3:
        weights = diff.new_tensor(LIIF_Y_WEIGHTS).view(1, 3, 1, 1)
        diff = (diff * weights).sum(dim=1, keepdim=True)
    diff = _shave(diff, shave, 1, "psnr")
    mse = diff.pow(2).mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse)


def _gaussian_window(size, sigma, dtype, device):
    t = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-t * t / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x, g):
    # Separable Gaussian, no padding: each output sees a full window.
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def _y255(x):
    x = x.double()
    return rgb_to_y(x) * 255.0 if x.shape[1] == 3 else x * 255.0


def ssim(sr, hr, protocol=None, scale=1):
    """Per-image SSIM on the Y channel (see the module doc); identical images give 1."""
    _check_pair(sr, hr)
    shave = shave_for(protocol, scale)
    x = _shave(_y255(sr), shave, SSIM_WINDOW, "ssim")
    y = _shave(_y255(hr), shave, SSIM_WINDOW, "ssim")
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, x.dtype, x.device)
    n = x.shape[0]
    # One filtering pass over the five planes of every image.
    stats = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=0), g)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(n, dim=0)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (num / den).mean(dim=(1, 2, 3))
