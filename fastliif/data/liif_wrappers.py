"""LIIF training wrappers, as the official ``sr-implicit-downsampled`` / ``sr-implicit-paired``.

Each item is ``{'inp': LR (3,h,w), 'coord': (Q,2), 'cell': (Q,2), 'gt': (Q,3)}`` with the HR
pixels as query points (``sample_q`` of them drawn without replacement, or all). Randomness
uses torch's generator, so ``torch.manual_seed`` makes a run (and DataLoader workers, which
torch seeds from it) reproducible.
"""
import math

import torch
from torch.utils.data import Dataset

from ..reference.coord import make_cell, to_pixel_samples
from .augment import randint, random_augment
from .registry import register
from .resize import resize


def query_samples(crop_hr, sample_q):
    """HR pixels as LIIF queries: coords, cells and values, ``sample_q`` of them at random."""
    coord, rgb = to_pixel_samples(crop_hr.contiguous())
    if sample_q is not None:
        if sample_q > len(coord):
            raise ValueError(f"sample_q={sample_q} exceeds the {len(coord)} pixels of a "
                             f"{tuple(crop_hr.shape[-2:])} HR crop")
        keep = torch.randperm(len(coord))[:sample_q]
        coord, rgb = coord[keep], rgb[keep]
    return coord, make_cell(coord, crop_hr.shape[-2:]), rgb


@register("sr-implicit-downsampled")
class SRImplicitDownsampled(Dataset):
    """Random scale s ~ U[scale_min, scale_max]; an HR crop of round(inp_size*s) pixels,
    resized down to inp_size x inp_size (``resize='pil'``: the official resize_fn; or
    'matlab' / 'torch'). ``inp_size=None``: the whole image (validation), HR trimmed to
    round(h_lr*s)."""

    def __init__(self, dataset, inp_size=None, scale_min=1, scale_max=None, augment=False, sample_q=None,
                 resize="pil"):
        self.dataset, self.inp_size, self.augment, self.sample_q = dataset, inp_size, augment, sample_q
        self.scale_min = float(scale_min)
        self.scale_max = self.scale_min if scale_max is None else float(scale_max)
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        if inp_size is not None and int(inp_size) < 1:
            raise ValueError(f"inp_size must be >= 1, got {inp_size}")
        self.resize = resize

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        img = self.dataset[idx]
        s = self.scale_min + float(torch.rand(())) * (self.scale_max - self.scale_min)
        if self.inp_size is None:
            h_lr = math.floor(img.shape[-2] / s + 1e-9)
            w_lr = math.floor(img.shape[-1] / s + 1e-9)
            if min(h_lr, w_lr) < 1:
                raise ValueError(f"image {tuple(img.shape)} is too small for scale {s}")
            crop_hr = img[:, :round(h_lr * s), :round(w_lr * s)]
            crop_lr = resize(crop_hr, (h_lr, w_lr), self.resize)
        else:
            w_lr = int(self.inp_size)
            w_hr = round(w_lr * s)
            if w_hr > min(img.shape[-2:]):
                raise ValueError(f"image {tuple(img.shape)} is smaller than the {w_hr}x{w_hr} HR crop "
                                 f"(inp_size {w_lr} x scale {s:.3f})")
            x0, y0 = randint(img.shape[-2] - w_hr), randint(img.shape[-1] - w_hr)
            crop_hr = img[:, x0:x0 + w_hr, y0:y0 + w_hr]
            crop_lr = resize(crop_hr, (w_lr, w_lr), self.resize)
        crop_lr, crop_hr = random_augment(crop_lr, crop_hr, augment=self.augment)
        coord, cell, rgb = query_samples(crop_hr, self.sample_q)
        return {"inp": crop_lr.contiguous(), "coord": coord, "cell": cell, "gt": rgb}


@register("sr-implicit-paired")
class SRImplicitPaired(Dataset):
    """Paired (LR, HR) items with an integer scale; aligned random crops of inp_size LR pixels
    (``None``: whole image, HR trimmed to scale * LR)."""

    def __init__(self, dataset, inp_size=None, augment=False, sample_q=None):
        self.dataset, self.inp_size, self.augment, self.sample_q = dataset, inp_size, augment, sample_q

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        item = self.dataset[idx]
        img_lr, img_hr = (item["inp"], item["gt"]) if isinstance(item, dict) else item
        s = img_hr.shape[-2] // img_lr.shape[-2]
        if s < 1:
            raise ValueError(f"HR {tuple(img_hr.shape)} is smaller than LR {tuple(img_lr.shape)}")
        if self.inp_size is None:
            h_lr, w_lr = img_lr.shape[-2:]
            crop_lr, crop_hr = img_lr, img_hr[:, :h_lr * s, :w_lr * s]
        else:
            w_lr = int(self.inp_size)
            if w_lr > min(img_lr.shape[-2:]):
                raise ValueError(f"LR image {tuple(img_lr.shape)} is smaller than inp_size {w_lr}")
            x0, y0 = randint(img_lr.shape[-2] - w_lr), randint(img_lr.shape[-1] - w_lr)
            crop_lr = img_lr[:, x0:x0 + w_lr, y0:y0 + w_lr]
            crop_hr = img_hr[:, x0 * s:(x0 + w_lr) * s, y0 * s:(y0 + w_lr) * s]
        crop_lr, crop_hr = random_augment(crop_lr, crop_hr, augment=self.augment)
        coord, cell, rgb = query_samples(crop_hr, self.sample_q)
        return {"inp": crop_lr.contiguous(), "coord": coord, "cell": cell, "gt": rgb}
