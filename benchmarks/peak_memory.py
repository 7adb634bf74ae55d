"""Peak resident memory of one LIIF query call, one fresh subprocess per (implementation, case).

    python benchmarks/peak_memory.py [--cases NAME ...] [--impls NAME ...] [--json out.json]

In the child: build the inputs, run a tiny call of the same kind (so one-time library set-up
such as thread pools and oneDNN kernels is not charged to the call), reset the kernel's
high-water mark (write "5" to /proc/self/clear_refs: VmHWM := VmRSS), read VmRSS as the
baseline, run the call once, read VmHWM. Reported: VmHWM - baseline, in MiB (Linux only).
The inference case is one unchunked call on all queries (no batched_predict).
"""
import argparse
import json
import os
import subprocess
import sys

from fastliif.bench import status_kib  # VmHWM / VmRSS in KiB

MEMORY_CASES = ("infer_48_to_192", "infer_128_to_512", "train_b4_48")


def _warm_up(impl, case):
    """One tiny call of the same kind, so lazy one-time initialisation happens before the baseline."""
    import torch

    from liif_cases import make_mlp, run_impl

    mlp = make_mlp()
    feat = torch.randn(case.feat.shape[0], case.feat.shape[1], 6, 6, requires_grad=case.kind == "train")
    coord = torch.rand(feat.shape[0], 64, 2) * 2 - 1
    cell = torch.full_like(coord, 2 / 24)
    if case.kind == "train":
        run_impl(impl, feat, coord, cell, mlp).sum().backward()
    else:
        with torch.no_grad():
            run_impl(impl, feat, coord, cell, mlp)


def child(impl, case_name):
    """Runs in the fresh subprocess; prints one JSON line."""
    from liif_cases import Case

    case = Case(case_name)
    fn = case.fn(impl)
    _warm_up(impl, case)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kib("VmRSS")
    fn()
    peak = status_kib("VmHWM")
    print(json.dumps({"impl": impl, "case": case_name, "baseline_mib": base / 1024,
                      "peak_mib": (peak - base) / 1024}))


def measure(impl, case_name):
    """Peak extra resident memory (MiB) of one call, measured in a fresh interpreter."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, os.path.join(here, "peak_memory.py"), "--child", impl, case_name],
                          capture_output=True, text=True, cwd=here)
    if proc.returncode != 0:
        raise RuntimeError(f"peak_memory child {impl}/{case_name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]


def measure_all(case_names=MEMORY_CASES, impls=None, log=print):
    """{case: {impl: MiB}}."""
    from liif_cases import IMPLS

    out = {}
    for name in case_names:
        out[name] = {}
        for impl in impls or IMPLS:
            out[name][impl] = measure(impl, name)
            log(f"  peak memory {name:18s} {impl:9s} {out[name][impl]:9.1f} MiB")
    return out


def markdown(results):
    lines = ["| case | implementation | peak memory (MiB) | reference / impl |", "|---|---|---:|---:|"]
    for name, row in results.items():
        ref = row.get("reference")
        for impl, mib in row.items():
            ratio = f"{ref / mib:.1f}x" if ref and mib > 0 else "-"
            lines.append(f"| {name} | {impl} | {mib:.1f} | {ratio} |")
    return "\n".join(lines)


def main():
    from liif_cases import IMPLS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    ap.add_argument("--cases", nargs="+", default=list(MEMORY_CASES), choices=list(MEMORY_CASES))
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    results = measure_all(args.cases, args.impls)
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
