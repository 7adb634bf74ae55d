"""Fixed-scale SR data (SRCNN / A2N / SRGAN / UDVD-style models): items ``{'inp': LR (C,h,w),
'gt': HR (C, s*h, s*w)}``.

- ``paired-image-folders``: two folders (LR, HR) of matching files -> ``(lr, hr)`` tuples, as the
  official LIIF dataset of that name.
- ``sr-paired``: wraps a paired dataset; aligned random crops of ``inp_size`` LR pixels.
- ``sr-downsampled``: wraps an HR-only dataset; random HR crops of ``inp_size * scale`` pixels,
  LR made by :func:`fastliif.data.resize.resize` (MATLAB bicubic by default).

Randomness comes from torch's global generator: ``torch.manual_seed`` makes a run reproducible,
and DataLoader workers get distinct streams (torch seeds each worker).
"""
import numbers
import os
import re

from torch.utils.data import Dataset

from .folders import ImageFolder, _Repeated
from .augment import randint, random_augment
from .registry import register
from .resize import METHODS, resize

# LR files are often named after their HR file with a scale tag: 0001x4.png, baby_x2.png.
_SCALE_TAG = re.compile(r"[._-]?x\d+$", re.IGNORECASE)


def _stem(path):
    return _SCALE_TAG.sub("", os.path.splitext(os.path.basename(path))[0])


@register("paired-image-folders")
class PairedImageFolders(_Repeated):
    """``(lr, hr)`` pairs from ``root_path_1`` (LR) and ``root_path_2`` (HR), matched by sorted
    file name. Names must agree up to the extension and a trailing scale tag (``0001x4.png`` pairs
    with ``0001.png``); ``check_names=False`` pairs by sorted order alone. ``first_k``, ``repeat``
    and ``cache`` ('none' | 'in_memory') as ``image-folder``."""

    def __init__(self, root_path_1, root_path_2, first_k=None, repeat=1, cache="none", check_names=True):
        super().__init__(repeat, cache)
        self.lr = ImageFolder(root_path_1, first_k=first_k)
        self.hr = ImageFolder(root_path_2, first_k=first_k)
        n_lr, n_hr = len(self.lr.files), len(self.hr.files)
        if n_lr != n_hr:
            raise ValueError(f"paired folders differ in size: {n_lr} images in {root_path_1} (LR), "
                             f"{n_hr} in {root_path_2} (HR)")
        if check_names:
            for a, b in zip(self.lr.files, self.hr.files):
                if _stem(a) != _stem(b):
                    raise ValueError(f"paired folders do not match: {os.path.basename(a)} (LR) is paired with "
                                     f"{os.path.basename(b)} (HR); pass check_names=False to pair by order")

    def n_items(self):
        return len(self.lr.files)

    def load(self, i):
        return self.lr.load(i), self.hr.load(i)


def _check_inp_size(inp_size):
    if inp_size is None:
        return None
    if isinstance(inp_size, bool) or not isinstance(inp_size, numbers.Integral) or inp_size < 1:
        raise ValueError(f"inp_size must be a positive integer or None, got {inp_size!r}")
    return int(inp_size)


def _check_scale(scale, allow_none=False):
    if scale is None and allow_none:
        return None
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f"scale must be a positive integer (fixed-scale models), got {scale!r}")
    return int(scale)


@register("sr-paired")
class SRPaired(Dataset):
    """Aligned crops of a paired dataset (items ``(lr, hr)`` or ``{'inp', 'gt'}``).

    The scale is ``hr_height // lr_height`` (must equal the width ratio) unless ``scale`` is given.
    ``inp_size``: LR patch side; the HR patch is the same region, ``scale`` times larger.
    ``None`` keeps the whole image (validation), HR trimmed to ``scale * LR``. ``augment``: random
    hflip, vflip and transpose, each p=0.5, the same for both images.
    """

    def __init__(self, dataset, inp_size=None, augment=False, scale=None):
        self.dataset = dataset
        self.inp_size = _check_inp_size(inp_size)
        self.augment = bool(augment)
        self.scale = _check_scale(scale, allow_none=True)

    def __len__(self):
        return len(self.dataset)

    def _scale_of(self, lr, hr):
        (h, w), (hh, ww) = lr.shape[-2:], hr.shape[-2:]
        s = self.scale if self.scale is not None else hh // h
        if s < 1 or (self.scale is None and ww // w != s):
            raise ValueError(f"HR {tuple(hr.shape)} is not an integer multiple of LR {tuple(lr.shape)}")
        if hh < s * h or ww < s * w:
            raise ValueError(f"HR {tuple(hr.shape)} is smaller than {s} x LR {tuple(lr.shape)}")
        return s

    def __getitem__(self, idx):
        item = self.dataset[idx]
        lr, hr = (item["inp"], item["gt"]) if isinstance(item, dict) else item
        if lr.shape[0] != hr.shape[0]:
            raise ValueError(f"LR {tuple(lr.shape)} and HR {tuple(hr.shape)} differ in channels")
        s = self._scale_of(lr, hr)
        h, w = lr.shape[-2:]
        if self.inp_size is None:
            crop_lr, crop_hr = lr, hr[:, :h * s, :w * s]
        else:
            p = self.inp_size
            if p > min(h, w):
                raise ValueError(f"LR image {tuple(lr.shape)} is smaller than inp_size {p}")
            y0, x0 = randint(h - p), randint(w - p)
            crop_lr = lr[:, y0:y0 + p, x0:x0 + p]
            crop_hr = hr[:, y0 * s:(y0 + p) * s, x0 * s:(x0 + p) * s]
        crop_lr, crop_hr = random_augment(crop_lr, crop_hr, augment=self.augment)
        return {"inp": crop_lr.contiguous(), "gt": crop_hr.contiguous()}


@register("sr-downsampled")
class SRDownsampled(Dataset):
    """LR made on the fly from an HR-only dataset (items CxHxW tensors).

    ``inp_size``: LR patch side; an HR patch of ``inp_size * scale`` pixels is cropped at a random
    position and resized down to ``inp_size`` with ``resize`` ('matlab' | 'pil' | 'torch').
    ``None``: the whole image, HR trimmed to a multiple of ``scale`` (top-left, the usual mod-crop).
    ``augment`` as ``sr-paired`` (applied after resizing, to both).
    """

    def __init__(self, dataset, scale, inp_size=None, augment=False, resize="matlab"):
        if resize not in METHODS:
            raise ValueError(f"resize must be one of {METHODS}, got {resize!r}")
        self.dataset = dataset
        self.scale = _check_scale(scale)
        self.inp_size = _check_inp_size(inp_size)
        self.augment = bool(augment)
        self.resize = resize

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        img = self.dataset[idx]
        s = self.scale
        if self.inp_size is None:
            h, w = img.shape[-2] // s, img.shape[-1] // s
            if min(h, w) < 1:
                raise ValueError(f"image {tuple(img.shape)} is smaller than scale {s}")
            crop_hr = img[:, :h * s, :w * s]
        else:
            h = w = self.inp_size
            side = h * s
            if side > min(img.shape[-2:]):
                raise ValueError(f"image {tuple(img.shape)} is smaller than the {side}x{side} HR crop "
                                 f"(inp_size {h} x scale {s})")
            y0, x0 = randint(img.shape[-2] - side), randint(img.shape[-1] - side)
            crop_hr = img[:, y0:y0 + side, x0:x0 + side]
        crop_lr = resize(crop_hr, (h, w), method=self.resize)
        crop_lr, crop_hr = random_augment(crop_lr, crop_hr, augment=self.augment)
        return {"inp": crop_lr.contiguous(), "gt": crop_hr.contiguous()}
