"""`fastliif demo`: bicubic vs LIIF vs the original on the bundled sample, with Y-PSNR."""
import sys


def register(sub):
    p = sub.add_parser("demo", help="bicubic | LIIF | original on the bundled sample image, with Y-PSNR",
                       description="Shrinks the bundled 192x192 sample by --scale (MATLAB bicubic), enlarges it "
                                   "back with bicubic and with LIIF, writes the three side by side.")
    p.add_argument("--scale", type=float, default=4.0, help="factor >= 1 (default 4)")
    p.add_argument("--out", default="fastliif-demo.png", help="output PNG (default fastliif-demo.png)")
    p.add_argument("--model", metavar="CKPT", help="LIIF checkpoint (official format); default: the bundled model")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "torch", "triton", "reference"),
                   help="query implementation (default auto)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto: cuda when available)")
    p.set_defaults(func=run)


def run(args):
    from ..demo import run_demo

    try:
        res = run_demo(args.scale, args.out, model=args.model, backend=args.backend, device=args.device)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        print(f"fastliif demo: error: {exc}", file=sys.stderr)
        return 2
    (h, w), (H, W) = res["lr_size"], res["hr_size"]
    print(f"x{args.scale:g}: {w}x{h} -> {W}x{H} (LR made with {res['resize']} bicubic, 8-bit)")
    print(f"bicubic  Y-PSNR {res['psnr_bicubic']:6.2f} dB")
    print(f"LIIF     Y-PSNR {res['psnr_liif']:6.2f} dB  ({res['seconds']:.2f} s, backend {res['backend']})")
    print(f"wrote {res['out']}")
    return 0
