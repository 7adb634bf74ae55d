"""`fastliif compare`: fused vs reference LIIF query, equivalence and speed."""
import sys


def register(sub):
    p = sub.add_parser("compare", help="fused vs reference LIIF query: equivalence and speed")
    p.add_argument("--size", type=int, default=48, help="feature map side (default 48)")
    p.add_argument("--scale", type=float, default=4.0, help="upscaling factor (default 4)")
    p.add_argument("--batch", type=int, default=4, help="training batch (default 4)")
    p.add_argument("--sample-q", type=int, default=2304, help="queries per training image")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per case (median)")
    p.add_argument("--backend", action="append", choices=["cpu", "torch"],
                   help="backend(s) to compare (default: all available)")
    p.set_defaults(func=lambda args: run(p, args))


def run(parser, args):
    from ..compare import run as compare
    for value, name in ((args.size, "--size"), (args.batch, "--batch"), (args.sample_q, "--sample-q"),
                        (args.rounds, "--rounds")):
        if value < 1:
            parser.error(f"{name} must be >= 1")
    if args.scale <= 0:
        parser.error("--scale must be > 0")
    rows = compare(args.size, args.scale, args.batch, args.sample_q, args.rounds, backends=args.backend)
    failed = [f"{case} / {impl}" for case, impl, _, passed, _, _ in rows if not passed]
    if failed:
        print("fused results outside 2x the reference's own fp32 error: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0
