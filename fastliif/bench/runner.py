"""The one runner: every case, device, precision and implementation measured the same way.

Per case and device: a tiny call of every implementation (one-time set-up such as thread pools
and oneDNN kernels is not charged), then per precision: on CUDA one full-size call (Triton's
compilation and autotuning at this size), one call whose peak memory is measured (its result is
the one checked against the reference's), then ``rounds`` timed calls interleaved across
implementations (ref, a, b, ref, a, b, ...); the median is reported. Speedup and memory ratio
are reference / implementation at the same precision; achieved TFLOP/s and GB/s are set against
the machine's measured matmul peak (same precision) and copy bandwidth.

A case that raises is recorded (``errors``) and the run goes on: on a GPU one kernel's failure
must not hide the other measurements.
"""
import datetime
import os
import platform
import time

import torch

from ..ops import availability
from ..ops._backends import triton_interpreting
from . import targets as T
from .cases import CASES, default_cases
from .measure import machine_peaks, measure_peak, memory_method, precision_mode, summary, time_rounds, timer_for

ROUNDS = {"full": 5, "quick": 3, "tiny": 2}
PAGE = 4096  # the resolution of the RSS figure: keeps memory ratios finite for near-zero peaks


def implementations(case, device):
    """"reference" + the fused backends that run ``case`` on ``device`` (the Triton interpreter is
    not timed). Whole training steps: the fused model's default backend only (they are slow)."""
    fused = ("cpu", "torch") if torch.device(device).type == "cpu" else ("triton", "cuda", "torch")
    ok = [b for b in fused if all(availability(op)[b][0] for op in case.ops())
          and not (b == "triton" and triton_interpreting())]
    return ["reference"] + (ok[:1] if case.kind == "train_step" else ok)


def rel_err(got, ref):
    """Worst max|got - ref| / max|ref| over the returned tensors."""
    worst = 0.0
    for g, r in zip(got, ref):
        r = r.detach().double()
        worst = max(worst, ((g.detach().double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item())
    return worst


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case, device, size="full", rounds=None, timer=None, peaks=None, impls=None, log=print):
    """Rows (one per precision and implementation) of one case on one device."""
    device = torch.device(device)
    timer = timer or timer_for(device)
    rounds = rounds or ROUNDS[size]
    if device.type == "cpu" and size == "full" and case.cpu_rounds:
        rounds = min(rounds, case.cpu_rounds)
    impls = impls or implementations(case, device)
    if size != "tiny":
        tiny = case.build(device, "tiny")
        for impl in impls:
            tiny.fn(impl)()
        del tiny
    inst = case.build(device, size)
    method = memory_method(device)
    matmul = (peaks or {}).get("matmul_tflops", {})
    copy_gbs = (peaks or {}).get("copy_gbs")
    rows = []
    for prec in case.precisions(device):
        with precision_mode(prec, device):
            first, peak = {}, {}
            for impl in impls:
                fn = inst.fn(impl)
                if device.type == "cuda":  # compile / autotune at this size before measuring
                    fn()
                    _sync(device)
                first[impl], peak[impl] = measure_peak(fn, device, method)
            times = time_rounds({impl: inst.fn(impl) for impl in impls}, rounds, timer)
        for impl in impls:
            t = summary(times[impl])
            work = inst.work(impl)
            row = {"device": device.type, "case": case.name, "kind": case.kind,
                   "title": case.describe(device, size), "precision": prec, "impl": impl,
                   "times_ms": times[impl], **t, "rounds": rounds,
                   "peak_mib": peak[impl] / 2**20, "memory_method": method,
                   "rel_err": None if impl == "reference" else rel_err(first[impl], first["reference"]),
                   "flops": work["flops"], "bytes": work["bytes"]}
            sec = t["median_ms"] * 1e-3
            row["tflops"] = None if work["flops"] is None else work["flops"] / sec / 1e12
            row["gbs"] = None if work["bytes"] is None else work["bytes"] / sec / 1e9
            row["peak_fraction"] = (row["tflops"] / matmul[prec]
                                    if row["tflops"] is not None and matmul.get(prec) else None)
            row["bandwidth_fraction"] = row["gbs"] / copy_gbs if row["gbs"] is not None and copy_gbs else None
            rows.append(row)
        ref = next(r for r in rows if r["precision"] == prec and r["impl"] == "reference")
        for row in rows:
            if row["precision"] == prec:
                row["speedup"] = ref["median_ms"] / row["median_ms"]
                row["memory_ratio"] = max(ref["peak_mib"], PAGE / 2**20) / max(row["peak_mib"], PAGE / 2**20)
    del inst, first
    if device.type == "cuda":
        torch.cuda.empty_cache()
    T.evaluate(case, rows)
    for row in rows:
        log(format_row(row))
    return rows


def format_row(r):
    extra = ""
    if r.get("tflops") is not None:
        extra += f"  {r['tflops']:.3g} TFLOP/s"
    if r.get("gbs") is not None:
        extra += f"  {r['gbs']:.3g} GB/s"
    tg = "".join(f"  [{T.fmt(x)}]" for x in r.get("targets", ()))
    return (f"  [{r['device']}] {r['case']:18s} {r['precision']:4s} {r['impl']:9s} {r['median_ms']:10.2f} ms  "
            f"speedup {r['speedup']:6.2f}x  peak {r['peak_mib']:9.2f} MiB  memory ratio "
            f"{r['memory_ratio']:6.2f}x{extra}{tg}")


def cpu_model():
    """The CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def machine_info():
    info = {"CPU": cpu_model(), "cores": f"{os.cpu_count()} logical, torch threads {torch.get_num_threads()}",
            "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "absent"
    if torch.cuda.is_available():
        info["CUDA"] = torch.version.cuda
    if hasattr(os, "getloadavg"):
        info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def run(out_dir=None, devices=None, cases=None, size="full", rounds=None, chart=True, log=print, on_row=None,
        timer=None, peaks=None):
    """Benchmark ``cases`` (names; default: each device's default set) on ``devices`` (default:
    the CPU, and CUDA when present). Returns (result dict, {kind: path written}, markdown text);
    with ``out_dir``, writes bench.md, bench.json and (``chart``) bench.png there.
    ``on_row(row)`` is called for every row as it is produced (the GPU triage logs them).
    ``timer``/``peaks``: injected by tests (a fake clock; no peak measurement)."""
    from . import writer

    rounds = rounds or ROUNDS[size]
    devices = [torch.device(d).type for d in (devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))]
    result = {"machine": machine_info(), "size": size, "rounds": rounds, "peaks": {}, "results": [], "errors": []}
    start = time.perf_counter()
    for device in devices:
        dev_timer = timer or timer_for(device)
        if peaks is None:
            result["peaks"][device] = machine_peaks(device, size, dev_timer)
        else:
            result["peaks"][device] = peaks.get(device, {})
        p = result["peaks"][device]
        if p:
            log(f"{device}: measured peaks: matmul " + ", ".join(f"{k} {v:.3g} TFLOP/s"
                                                                  for k, v in p["matmul_tflops"].items())
                + f"; copy {p['copy_gbs']:.4g} GB/s")
        for name in cases or default_cases(device):
            case = CASES[name]
            log(f"{device}: {name}: {', '.join(implementations(case, device))}")
            try:
                rows = run_case(case, device, size, rounds, dev_timer, p, log=log)
            except Exception as exc:  # one failing case must not hide the others
                err = {"device": device, "case": name, "error": f"{type(exc).__name__}: {exc}"}
                result["errors"].append(err)
                log(f"  [{device}] {name}: FAILED {err['error']}")
                if on_row:
                    on_row(err)
                continue
            result["results"] += rows
            for row in rows:
                if on_row:
                    on_row(row)
    result["machine"]["wall time"] = f"{time.perf_counter() - start:.1f} s"
    text = writer.markdown(result)
    paths = writer.write(out_dir, result, text, chart) if out_dir else {}
    return result, paths, text
