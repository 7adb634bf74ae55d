"""Resizing for SR data, one entry point for the three conventions in use.

- ``'matlab'``: MATLAB ``imresize`` bicubic with antialiasing (:mod:`fastliif.data.imresize`); the
  SR papers' protocol for benchmark LR images and the default for evaluation.
- ``'pil'``: exactly the official LIIF training ``resize_fn``: float -> 8-bit by truncation
  (``ToPILImage``), PIL bicubic (antialiased when shrinking), back to float. Used by the LIIF
  training wrapper (``sr-implicit-downsampled``), as in the official code.
- ``'torch'``: ``F.interpolate(mode='bicubic', antialias=True, align_corners=False)``, float,
  no quantisation; fast, differentiable, on any device.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

METHODS = ("matlab", "pil", "torch")


def _check(x, size):
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise ValueError(f"resize: expected a CxHxW or BxCxHxW tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.numel() == 0:
        raise ValueError(f"resize: empty tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"resize: expected a floating tensor, got {x.dtype}")
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"resize: size must be (height, width) >= 1, got {size}")
    return size


def _pil_resize(img, size):
    # ToPILImage on float does mul(255).byte(): truncation, then PIL bicubic on 8-bit planes.
    arr = (img.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    c = arr.shape[2]
    pil = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    out = np.asarray(pil.resize((size[1], size[0]), Image.BICUBIC), dtype=np.float32) / 255.0
    if out.ndim == 2:
        out = out[:, :, None]
    return torch.from_numpy(out.transpose(2, 0, 1).copy()).to(img.device, img.dtype)


def resize(x, size, method="matlab"):
    """Resize CxHxW or BxCxHxW float images to ``size = (height, width)``."""
    size = _check(x, size)
    if method == "matlab":
        from .imresize import imresize
        return imresize(x, size=size)
    if method == "pil":
        if x.shape[-3] not in (1, 3):
            raise ValueError(f"resize(method='pil'): 1 or 3 channels, got {x.shape[-3]}")
        if x.dim() == 3:
            return _pil_resize(x, size)
        return torch.stack([_pil_resize(img, size) for img in x])
    if method == "torch":
        batched = x if x.dim() == 4 else x[None]
        out = F.interpolate(batched, size=size, mode="bicubic", align_corners=False, antialias=True)
        return out if x.dim() == 4 else out[0]
    raise ValueError(f"resize: unknown method {method!r}; choose from {METHODS}")
