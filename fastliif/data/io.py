"""Image files <-> float tensors in [0, 1] (Pillow)."""
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..atomic import save_image as atomic_save_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path):
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def open_image(path):
    """Open with Pillow; errors name the path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    return img


def pil_to_tensor(img):
    """PIL image -> float32 CxHxW in [0, 1] (C = number of bands; 16-bit and float modes scaled)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
    else:
        if img.mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def load_image(path, mode="RGB"):
    """Read an image file as float32 CxHxW in [0, 1]; ``mode='RGB'`` (default) converts grayscale and
    drops alpha, ``mode=None`` keeps the file's own bands."""
    img = open_image(path)
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    return pil_to_tensor(img)


def tensor_to_pil(x):
    """float CxHxW (C in 1..4) in [0, 1] -> 8-bit PIL image (rounded, clamped)."""
    if x.dim() != 3 or x.shape[0] not in (1, 2, 3, 4):
        raise ValueError(f"expected a CxHxW tensor with 1-4 channels, got shape {tuple(x.shape)}")
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode=mode)


# Formats Pillow writes faithfully for 8-bit L, RGB and RGBA at any size up to the format's own
# limit (checked by writing and reading back every mode): extension -> (Pillow format, save
# options, keeps alpha, largest side). JPEG is lossy by nature (quality 95); WebP is written
# lossless, with the colour under transparent pixels kept (``exact``). Pillow writes RGBA BMP
# but reads it back as RGB, and cannot write gray + alpha BMP/JPEG: those drop alpha, with a note.
OUTPUT_FORMATS = {
    ".png": ("PNG", {}, True, None),
    ".jpg": ("JPEG", {"quality": 95}, False, 65535),
    ".jpeg": ("JPEG", {"quality": 95}, False, 65535),
    ".webp": ("WEBP", {"lossless": True, "exact": True}, True, 16383),
    ".tif": ("TIFF", {}, True, None),
    ".tiff": ("TIFF", {}, True, None),
    ".bmp": ("BMP", {}, False, None),
}
CLASSIC_MAX_BYTES = 2**32 - 2**16  # BMP and classic TIFF store offsets in 32 bits


def output_format(path, size_hw=None, channels=3):
    """``(Pillow format, save options, note)`` for writing an 8-bit image of ``size_hw`` (height,
    width) with ``channels`` (1-4) to ``path``; ``note`` says what the format loses (alpha) or
    None. Raises ValueError naming the extension and the accepted ones, or the size limit."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        accepted = ", ".join(sorted(OUTPUT_FORMATS))
        raise ValueError(f"{path}: cannot write {ext or 'a file without extension'} images faithfully; "
                         f"use one of {accepted}")
    fmt, options, keeps_alpha, max_side = OUTPUT_FORMATS[ext]
    if size_hw is not None:
        h, w = size_hw
        if max_side is not None and max(h, w) > max_side:
            raise ValueError(f"{fmt} images are at most {max_side} pixels a side, the output is {w}x{h}: "
                             "write a .png")
        if fmt in ("BMP", "TIFF") and h * w * 4 > CLASSIC_MAX_BYTES:
            raise ValueError(f"a {w}x{h} {fmt} file would pass the format's 4 GiB limit: write a .png")
    note = None
    if channels in (2, 4) and not keeps_alpha:
        note = (f"{fmt} keeps no alpha channel here: the alpha plane was dropped "
                "(write a .png, .webp or .tiff to keep it)")
    return fmt, dict(options), note


def write_image(img, path, **options):
    """Write a PIL image atomically (fastliif.atomic) in the format of ``path``'s extension,
    dropping alpha where the format cannot keep it; ``options`` override the format's defaults.
    Creates the parent folder."""
    fmt, defaults, _ = output_format(path, (img.height, img.width), len(img.getbands()))
    if not OUTPUT_FORMATS[os.path.splitext(os.fspath(path))[1].lower()][2] and img.mode in ("LA", "RGBA"):
        img = img.convert("L" if img.mode == "LA" else "RGB")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_save_image(img, path, format=fmt, **{**defaults, **options})


def save_image(x, path, **options):
    """Write float CxHxW in [0, 1] as an 8-bit image (atomically); format from the extension."""
    write_image(tensor_to_pil(x), path, **options)
