"""`fastliif bench`: fused vs reference speed and peak memory on this machine's backends."""
import sys


def register(sub):
    p = sub.add_parser("bench", help="fused vs reference: speed and peak memory (markdown, PNG chart, JSON)",
                       description="LIIF inference and training step, UDVD dynamic_conv fwd and fwd+bwd: "
                                   "reference vs every fused backend of this machine, medians of interleaved "
                                   "rounds and the peak memory of one call.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes: about 15 s on 2 cores (the full sizes take a few minutes)")
    p.add_argument("--out", default="fastliif-bench", metavar="DIR",
                   help="where bench.md, bench.png and bench.json go (default ./fastliif-bench)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, metavar="N", help="timed rounds per case (default 5, --quick 3)")
    p.set_defaults(func=run)


def run(args):
    import torch

    from ..bench import run as bench

    for value, name in ((args.threads, "--threads"), (args.rounds, "--rounds")):
        if value is not None and value < 1:
            print(f"fastliif bench: error: {name} must be >= 1", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        _, paths, text = bench(args.out, quick=args.quick, rounds=args.rounds, log=log)
    except OSError as exc:
        print(f"fastliif bench: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(text)
    for path in paths.values():
        print(f"wrote {path}")
    return 0
