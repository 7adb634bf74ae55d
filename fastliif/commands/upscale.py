"""`fastliif upscale`: upscale an image file with the bundled (or a given) LIIF model."""
import sys


def register(sub):
    p = sub.add_parser("upscale", help="upscale an image with LIIF (any scale >= 1, any size)",
                       description="Upscale an image with a LIIF model, any size: the encoder runs in tiles, the "
                                   "output is computed in row bands into an 8-bit image and written atomically. "
                                   "Grayscale stays grayscale; an alpha channel is kept (bicubic).")
    p.add_argument("input", metavar="INPUT", help="image file to upscale (PNG, JPEG, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output image; the format follows the extension: .png, .jpg/.jpeg, .webp (lossless), "
                        ".tif/.tiff, .bmp (JPEG and BMP drop alpha)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--scale", metavar="S", help="upscaling factor >= 1, e.g. 4 or 2.5")
    how.add_argument("--size", metavar="WxH", help="output width x height, e.g. 1920x1080 (each >= the input's)")
    p.add_argument("--model", metavar="CKPT", help="LIIF checkpoint (official format); default: the bundled model")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "torch", "triton", "reference"),
                   help="query implementation (default auto: the fastest for the device)")
    p.add_argument("--precision", choices=("ieee", "tf32", "bf16", "fp16"),
                   help="GPU matmul precision (default: PyTorch's settings); the CPU computes IEEE fp32")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto: cuda when available)")
    p.add_argument("--slices", type=int, default=None, metavar="N",
                   help="query the output in at least N row bands (same pixels); default: bands of "
                        "about a million pixels")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def fail(msg):
    print(f"fastliif upscale: error: {msg}", file=sys.stderr)
    return 2


def run(args):
    from ..upscale import upscale_file

    try:
        res = upscale_file(args.input, args.output, scale=args.scale, size=args.size, model=args.model,
                           backend=args.backend, precision=args.precision, device=args.device,
                           slices=args.slices, progress=not args.no_progress)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:  # user-facing: message, no traceback
        return fail(str(exc) or type(exc).__name__)
    (h, w), (H, W) = res.input_size, res.output_size
    s = res.seconds
    print(f"{w}x{h} -> {W}x{H} (x{W / w:.3g} wide, x{H / h:.3g} high), backend {res.backend}: "
          f"{s['total']:.2f} s (load {s['load']:.2f}, encode {s['encode']:.2f}, query {s['query']:.2f}, "
          f"write {s['write']:.2f})")
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0
