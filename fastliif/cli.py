"""`fastliif` command line."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastliif", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmp_ = sub.add_parser("compare", help="fused vs reference LIIF query: equivalence and speed")
    cmp_.add_argument("--size", type=int, default=48, help="feature map side (default 48)")
    cmp_.add_argument("--scale", type=float, default=4.0, help="upscaling factor (default 4)")
    cmp_.add_argument("--batch", type=int, default=4, help="training batch (default 4)")
    cmp_.add_argument("--sample-q", type=int, default=2304, help="queries per training image")
    cmp_.add_argument("--rounds", type=int, default=3, help="timed rounds per case (median)")
    cmp_.add_argument("--backend", action="append", choices=["cpu", "torch"],
                      help="backend(s) to compare (default: all available)")
    sub.add_parser("env", help="versions and available backends")
    args = parser.parse_args(argv)

    if args.command == "compare":
        from .compare import run
        for value, name in ((args.size, "--size"), (args.batch, "--batch"), (args.sample_q, "--sample-q"),
                            (args.rounds, "--rounds")):
            if value < 1:
                parser.error(f"{name} must be >= 1")
        if args.scale <= 0:
            parser.error("--scale must be > 0")
        rows = run(args.size, args.scale, args.batch, args.sample_q, args.rounds, backends=args.backend)
        failed = [f"{case} / {impl}" for case, impl, _, passed, _, _ in rows if not passed]
        if failed:
            print("fused results outside 2x the reference's own fp32 error: " + ", ".join(failed), file=sys.stderr)
            return 1
        return 0
    if args.command == "env":
        from .env import report
        print(report())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
