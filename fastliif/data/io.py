"""Image files <-> float tensors in [0, 1] (Pillow)."""
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

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


def save_image(x, path, **kwargs):
    """Write float CxHxW in [0, 1] as an 8-bit image; format from the extension."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    img = tensor_to_pil(x)
    if os.path.splitext(path)[1].lower() in (".jpg", ".jpeg") and img.mode in ("LA", "RGBA"):
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    img.save(path, **kwargs)
