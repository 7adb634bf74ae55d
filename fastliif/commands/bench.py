"""`fastliif bench`: fused vs reference speed and peak memory, the command line of fastliif.bench."""
import sys


def register(sub):
    p = sub.add_parser("bench", help="fused vs reference: speed and peak memory (markdown, PNG chart, JSON)",
                       description="LIIF inference and training step, UDVD dynamic_conv fwd and fwd+bwd, whole "
                                   "training steps: reference vs every fused backend of this machine, medians of "
                                   "interleaved rounds, peak memory of one call, TFLOP/s and GB/s against the "
                                   "measured peaks; on CUDA each row says whether its target is met.")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="where to run (default all: the CPU, and CUDA when present)")
    p.add_argument("--cases", metavar="NAMES",
                   help="comma-separated case names or patterns (e.g. 'liif_*,dconv_fwd'; 'all' for every case; "
                        "default: each device's default set); --list shows them")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--quick", action="store_true",
                   help="small sizes: under a minute on 2 cores (the full sizes take a few minutes)")
    p.add_argument("--out", default="fastliif-bench", metavar="DIR",
                   help="where bench.md, bench.png and bench.json go (default ./fastliif-bench)")
    p.add_argument("--no-chart", action="store_true", help="write no PNG (no matplotlib needed)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, metavar="N", help="timed rounds per case (default 5, --quick 3)")
    p.set_defaults(func=run)


def _error(msg):
    print(f"fastliif bench: error: {msg}", file=sys.stderr)
    return 2


def run(args):
    import torch

    from .. import bench

    if args.list:
        for name, case in bench.CASES.items():
            print(f"{name:20s} {case.describe()}  (default on: {', '.join(case.devices)})")
        return 0
    for value, name in ((args.threads, "--threads"), (args.rounds, "--rounds")):
        if value is not None and value < 1:
            return _error(f"{name} must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        return _error("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    devices = None if args.device == "all" else [args.device]
    try:  # every check before the work: a bad name or a missing matplotlib costs no minutes
        cases = bench.select(args.cases.split(",")) if args.cases else None
        if not args.no_chart:
            bench.require_matplotlib()
    except (ValueError, ImportError) as exc:
        return _error(exc)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        result, paths, text = bench.run(args.out, devices=devices, cases=cases, size="quick" if args.quick else "full",
                                        rounds=args.rounds, chart=not args.no_chart, log=log)
    except OSError as exc:
        return _error(exc)
    print()
    print(text)
    for path in paths.values():
        print(f"wrote {path}")
    if result["errors"]:
        return _error(f"{len(result['errors'])} case(s) failed: "
                      + "; ".join(f"{e['case']} ({e['error']})" for e in result["errors"]))
    return 0
