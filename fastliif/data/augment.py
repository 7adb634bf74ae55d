"""Shared augmentation and crop helpers of the training wrappers (LIIF, fixed-scale, UDVD)."""
import torch


def dihedral(x, flip_rows, flip_cols, transpose):
    """One of the 8 dihedral symmetries on the last two dims (image or kernel alike): reverse the
    rows (vertical flip), the columns (horizontal flip), then transpose."""
    if flip_rows:
        x = x.flip(-2)
    if flip_cols:
        x = x.flip(-1)
    if transpose:
        x = x.transpose(-2, -1)
    return x


def random_augment(*images, augment=True):
    """The official LIIF flips (rows, columns, transpose, each with p=0.5), the same for every
    image of the tuple; torch's generator, so ``torch.manual_seed`` fixes them."""
    if not augment:
        return images
    flags = (torch.rand(3) < 0.5).tolist()
    return tuple(dihedral(x, *flags) for x in images)


def randint(high):
    """Uniform integer in [0, high] from torch's generator."""
    return int(torch.randint(0, high + 1, ()).item())
