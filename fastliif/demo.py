"""`fastliif demo`: the bundled model on the bundled sample, next to bicubic, with Y-PSNR.

The sample (192x192, not seen in training) is the high-resolution truth. It is shrunk by the
scale with MATLAB-style bicubic ``imresize`` (the SR papers' protocol for LR images) and
rounded to 8 bits, as a saved LR image would be; then enlarged back to 192x192 by bicubic
(the same ``imresize``: the papers' "Bicubic" row) and by LIIF. PSNR is the papers'
'benchmark' protocol: on the Y channel (ITU-R BT.601 weights 65.738, 129.057, 25.064 / 256),
``ceil(scale)`` border pixels shaved.
"""
import math
import time

from PIL import Image, ImageDraw, ImageFont

from .data.io import load_image, tensor_to_pil, write_image
from .data.resize import resize
from .metrics import psnr
from .pretrained import load_pretrained, sample_image_path
from .upscale import check_output_path, is_fused, parse_device, resolve_backend, upscale_tensor

HEADER = 34  # pixels of label strip above the panels


def resize_matlab(x, hw):
    """MATLAB-style bicubic imresize, clamped to [0, 1]. Returns (image, method name)."""
    return resize(x, hw, method="matlab").clamp(0, 1), "matlab"


def y_psnr(sr, hr, shave):
    """Y-channel PSNR (the 'benchmark' protocol) of one 3xHxW pair, ``shave`` pixels per border."""
    return float(psnr(sr[None], hr[None], protocol="benchmark", scale=shave)[0])


def _font():
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def side_by_side(panels, labels):
    """Panels (3xHxW tensors) left to right with a label strip above each; width = sum of widths."""
    imgs = [tensor_to_pil(p) for p in panels]
    H = max(i.height for i in imgs)
    canvas = Image.new("RGB", (sum(i.width for i in imgs), H + HEADER), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font()
    x = 0
    for img, label in zip(imgs, labels):
        canvas.paste(img, (x, HEADER))
        draw.multiline_text((x + 4, 2), label, fill="black", font=font, spacing=2)
        x += img.width
    return canvas


def run_demo(scale=4.0, out="fastliif-demo.png", model=None, backend="auto", device="cpu"):
    """Writes the comparison image (any format of fastliif.data.io.OUTPUT_FORMATS); returns a dict with the PSNRs, sizes, timing and resize method."""
    scale = float(scale)
    if not math.isfinite(scale) or scale < 1:
        raise ValueError(f"--scale must be a finite number >= 1, got {scale:g}")
    check_output_path(out)  # a format that cannot be written is refused before any work
    device = parse_device(device, backend)
    name = resolve_backend(backend, device)
    bundled = model is None
    if model is None or isinstance(model, str):
        model = load_pretrained(model, backend=backend, device=device)
    hr = load_image(sample_image_path())
    H, W = hr.shape[-2:]
    lr_hw = (max(1, round(H / scale)), max(1, round(W / scale)))
    lr, method = resize_matlab(hr, lr_hw)
    lr = (lr * 255).round() / 255  # an 8-bit LR image, as read from a file
    bicubic, _ = resize_matlab(lr, (H, W))
    timings = {}
    t0 = time.perf_counter()
    sr = upscale_tensor(model, lr, (H, W), timings=timings, progress=False)
    seconds = time.perf_counter() - t0
    shave = math.ceil(scale)
    res = {"psnr_bicubic": y_psnr(bicubic, hr, shave), "psnr_liif": y_psnr(sr, hr, shave), "seconds": seconds,
           "lr_size": lr_hw, "hr_size": (H, W), "resize": method, "backend": name if is_fused(model) else "reference",
           "out": out}
    labels = [f"bicubic x{scale:g} (from {lr_hw[1]}x{lr_hw[0]})\nY-PSNR {res['psnr_bicubic']:.2f} dB",
              f"LIIF x{scale:g}\nY-PSNR {res['psnr_liif']:.2f} dB",
              f"original {W}x{H}" + ("\n(not in the training set)" if bundled else "")]
    write_image(side_by_side([bicubic, sr, hr], labels), out)  # atomic: an old file survives a failure
    return res
