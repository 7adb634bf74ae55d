"""Make the fine-tuning folder of the bundled LIIF (issue 13): the training photographs plus
Gaussian-blurred copies of every second one, so about a third of the random training crops are
smooth (bokeh-, sky- or still-water-like) content.

    python scripts/make_smooth_photos.py /work/data/photos/train /work/data/photos/train_smooth

Why: stage 1 (configs/liif-photos.yaml) still loses to bicubic on flat areas at x4 and beyond by a
level shift of about +0.1 8-bit levels (docs/grid_study.md): random 48x48 crops of ordinary
photographs are rarely flat, so little of the training signal says "a flat area keeps its level".
The blurred copies are derived from the same training photographs only (no other source), blurred
with sigma 2, 4 or 8 HR pixels in turn. The originals are hard-linked (copied where a link
cannot be made); every file is written atomically. Bad input: one line on stderr, exit 2.
"""
import argparse
import os
import shutil
import sys

import torch

from fastliif import atomic
from fastliif.data.degradations import isotropic_gaussian_kernel
from fastliif.data.io import is_image_file, load_image, save_image

SIGMAS = (2.0, 4.0, 8.0)


def gaussian_blur(img, sigma):
    """CxHxW float -> same size, Gaussian of std ``sigma`` (radius 3 sigma), reflected borders.
    Separable: the 1-D kernel is the row sum of the degradation pipeline's isotropic kernel."""
    r = int(3 * sigma + 0.5)
    k = isotropic_gaussian_kernel(2 * r + 1, sigma).sum(0).to(img.dtype)
    c = img.shape[0]
    out = img[None]
    out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, (r, r, 0, 0), mode="reflect"),
                                     k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, (0, 0, r, r), mode="reflect"),
                                     k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out[0].clamp(0, 1)


def make(src, dst, log=print):
    if not os.path.isdir(src):
        raise ValueError(f"{src}: not a folder")
    names = sorted(f for f in os.listdir(src) if is_image_file(os.path.join(src, f)))
    if not names:
        raise ValueError(f"{src}: no images")
    os.makedirs(dst, exist_ok=True)
    for i, name in enumerate(names):
        target = os.path.join(dst, name)
        if not os.path.exists(target):
            try:
                os.link(os.path.join(src, name), target)
            except OSError:
                with open(os.path.join(src, name), "rb") as f, atomic.atomic_write(target) as out:
                    shutil.copyfileobj(f, out)
        if i % 2:
            continue
        sigma = SIGMAS[(i // 2) % len(SIGMAS)]
        out = os.path.join(dst, f"{os.path.splitext(name)[0]}-blur{sigma:g}.png")
        if not os.path.exists(out):
            save_image(gaussian_blur(load_image(os.path.join(src, name)), sigma), out)
        log(f"{out} (sigma {sigma:g})")
    return names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="the training photographs (scripts/get_photos.sh OUT/train)")
    p.add_argument("dst", help="output folder (e.g. OUT/train_smooth)")
    a = p.parse_args(argv)
    try:
        make(a.src, a.dst)
    except (OSError, ValueError) as exc:
        print(f"make_smooth_photos: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
