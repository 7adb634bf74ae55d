"""Side-by-side CPU report of the LIIF query: reference vs fused (cpu, torch backends).

    python benchmarks/report.py [--quick] [--rounds N]

Times every (case, implementation) in this process (time.perf_counter, one warm-up call,
then N rounds interleaved across implementations, median), measures peak memory with peak_memory.py (a fresh subprocess per
call), and writes benchmarks/results/cpu_report.md and cpu_report.png. --quick skips timing
the 512x512 reference (~30 s a call here); its memory is still measured.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import peak_memory
from liif_cases import CASES, IMPLS, SLOW_CASES, Case

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def time_case(fns, rounds, warmup):
    """{impl: (median, min, max) ms}. Rounds are interleaved (ref, cpu, torch, ref, ...) so
    that load from other processes on a shared machine hits every implementation alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {impl: [] for impl in fns}
    for _ in range(rounds):
        for impl, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[impl].append(1e3 * (time.perf_counter() - t0))
    return {impl: (statistics.median(t), min(t), max(t)) for impl, t in times.items()}


def time_all(quick, rounds):
    """{case: {impl: (median, min, max) ms}}; each fused impl is checked against the reference first."""
    out = {}
    for name in CASES:
        case = Case(name)
        slow = name in SLOW_CASES
        impls = [i for i in IMPLS if not (quick and slow and i == "reference")]
        for impl in impls:
            case.check(impl)
        # the large case: 3 rounds, no warm-up (the small case already ran the same code)
        out[name] = time_case({i: case.fn(i) for i in impls}, rounds=3 if slow else rounds, warmup=0 if slow else 1)
        for impl, (med, lo, hi) in out[name].items():
            print(f"  time {name:18s} {impl:9s} {med:10.1f} ms  (min {lo:.1f}, max {hi:.1f})", flush=True)
    return out


def machine_info():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=HERE).stdout.strip()
    except OSError:
        rev = ""
    return {
        "CPU": model,
        "cores": f"{os.cpu_count()} logical, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fastliif commit": rev or "unknown",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def median(times, name, impl):
    return times[name][impl][0] if impl in times[name] else None


def fmt(x, spec, suffix=""):
    return "-" if x is None else f"{x:{spec}}{suffix}"


def markdown(info, times, mem, rounds):
    lines = ["# fastliif LIIF query: CPU report", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- timing: median of {rounds} rounds after one warm-up (512x512: 3 rounds, no warm-up), "
              "rounds interleaved across implementations; fp32; inference under no_grad; "
              "training = forward + L1 loss + backward",
              "- peak memory: VmHWM - VmRSS baseline of one call in a fresh process (peak_memory.py)",
              "- speedup and memory ratio are reference / implementation",
              "- a load average above the core count means other processes shared the CPU: absolute ms are "
              "then inflated (up to ~3x seen here); the speedups, from interleaved rounds, are the robust numbers",
              "",
              "| case | implementation | median ms | min - max ms | speedup | peak memory MiB | memory ratio |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, (title, _, _) in CASES.items():
        ref_t, ref_m = median(times, name, "reference"), mem.get(name, {}).get("reference")
        for impl in IMPLS:
            t, m = median(times, name, impl), mem.get(name, {}).get(impl)
            spread = "-" if t is None else "{1:.1f} - {2:.1f}".format(*times[name][impl])
            speed = ref_t / t if ref_t and t else None
            ratio = ref_m / m if ref_m and m and m > 0 else None
            lines.append(f"| {title} | {impl} | {fmt(t, '.1f')} | {spread} | {fmt(speed, '.2f', 'x')} | "
                         f"{fmt(m, '.1f')} | {fmt(ratio, '.1f', 'x')} |")
    return "\n".join(lines) + "\n"


def plot(times, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipping the PNG (pip install matplotlib)")
        return
    fused = [i for i in IMPLS if i != "reference"]
    names = list(CASES)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(fused)
    for k, impl in enumerate(fused):
        vals = []
        for n in names:
            ref, t = median(times, n, "reference"), median(times, n, impl)
            vals.append(ref / t if ref and t else 0.0)
        xs = [i + (k - (len(fused) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, vals, width, label=f"fused, backend={impl}")
        ax.bar_label(bars, labels=[f"{v:.2f}x" if v else "n/a" for v in vals], fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), [CASES[n][0].replace(", ", "\n", 1) for n in names], fontsize=8)
    ax.set_ylabel("speedup vs reference (median time)")
    ax.set_title("LIIF query on CPU: speedup over the official semantics")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip timing the 512x512 reference")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per small case (default 5)")
    args = ap.parse_args()
    start = time.perf_counter()
    info = machine_info()
    print("timing (each fused implementation is checked against the reference first)", flush=True)
    times = time_all(args.quick, args.rounds)
    print("peak memory (one fresh process per call)", flush=True)
    mem = peak_memory.measure_all()
    os.makedirs(RESULTS, exist_ok=True)
    text = markdown(info, times, mem, args.rounds)
    md_path = os.path.join(RESULTS, "cpu_report.md")
    with open(md_path, "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {md_path}")
    plot(times, os.path.join(RESULTS, "cpu_report.png"))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
