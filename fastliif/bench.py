"""`fastliif bench`: fused vs reference speed and peak memory, side by side, on this machine.

Cases (``--quick``: smaller sizes, the same kinds): LIIF inference x4 with an EDSR-baseline
decoder (580 -> 256 x4 -> 3) on 48x48 -> 192x192 and on a larger output queried in one call,
a LIIF training step (forward + L1 loss + backward, B=4, sample_q=2304), and UDVD's dynamic
convolution forward and forward+backward at a UDVD training size (N=16, C=3, 64x64, k=5, x4).
"reference" is the official semantics (``fastliif.reference``: ``query_rgb`` / the seed's
``PixelConv``); every other implementation is the fused op with that backend. Devices: the
CPU, and CUDA when a GPU is present.

Per case: a tiny call of every implementation (one-time set-up such as thread pools and
oneDNN kernels is not charged; on CUDA also one full-size call, for Triton's compilation and
autotuning at that size), one call whose peak memory is measured (it is also the full-size
warm-up and the one checked against the reference), then ``rounds`` timed calls
interleaved across implementations (ref, cpu, torch, ref, ...) so that load from other
processes hits all alike; the median is reported.

Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` over the call minus the allocated
bytes before it. CPU (Linux): the process's resident high-water mark (VmHWM, reset through
/proc/self/clear_refs) minus the resident size before the call, after ``malloc_trim(0)``
has returned freed heap pages to the system (else a call could reuse pages an earlier call
left behind and look free); this counts every allocation, including the C++ kernels' own.
Elsewhere: the CPU allocations the torch profiler records.
"""
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import time

import torch

from .ops import availability, dynamic_conv, liif_query
from .reference import MLP, PixelConv, make_cell, make_coord, query_rgb_reference

LIIF_C, LIIF_HIDDEN = 64, [256] * 4  # the EDSR-baseline LIIF decoder
DCONV_K = 5  # UDVD's kernel size
PAGE = 4096

# name -> (title, kind, full params, quick params)
CASES = {
    "liif_infer_small": ("LIIF inference x4, {h}x{h} -> {H}x{H}", "liif_infer", dict(h=48), dict(h=12)),
    "liif_infer_large": ("LIIF inference x4, {h}x{h} -> {H}x{H}, one call", "liif_infer", dict(h=128), dict(h=24)),
    "liif_train": ("LIIF training step, B={b}, {h}x{h}, sample_q={q}", "liif_train",
                   dict(b=4, h=48, q=2304), dict(b=2, h=16, q=576)),
    "dconv_fwd": ("dynamic_conv fwd, N={n} C=3 {h}x{h} k=5 x4", "dconv_fwd", dict(n=16, h=64), dict(n=4, h=32)),
    "dconv_fwdbwd": ("dynamic_conv fwd+bwd, N={n} C=3 {h}x{h} k=5 x4", "dconv_fwdbwd",
                     dict(n=16, h=64), dict(n=4, h=32)),
}
# cases whose reference call takes ~10 s or more on 2 cores (full sizes): at most 3 timed rounds
LARGE = {"liif_infer_large"}
TINY = {"liif_infer": dict(h=4), "liif_train": dict(b=1, h=4, q=16), "dconv_fwd": dict(n=1, h=4),
        "dconv_fwdbwd": dict(n=1, h=4)}


# ------------------------------------------------------------------------------------------ cases

def _mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(LIIF_C * 9 + 4, 3, LIIF_HIDDEN)


def _liif(impl, feat, coord, cell, mlp):
    if impl == "reference":
        return query_rgb_reference(feat, coord, cell, mlp)
    linears = list(mlp.layers)[0::2]
    return liif_query(feat, coord, cell, [m.weight for m in linears], [m.bias for m in linears], backend=impl)


class Case:
    """Inputs of one benchmark (fixed seed, random values) and a callable per implementation
    returning the tensors to check: the output (and, for dynamic_conv fwd+bwd, both gradients)."""

    def __init__(self, kind, params, device="cpu", seed=0):
        self.kind, self.params, self.device = kind, dict(params), torch.device(device)
        g = torch.Generator().manual_seed(seed)
        dev = self.device
        if kind == "liif_infer":
            h = params["h"]
            H = 4 * h
            self.mlp = _mlp(seed).to(dev)
            self.feat = torch.randn(1, LIIF_C, h, h, generator=g).to(dev)
            self.coord = make_coord((H, H)).unsqueeze(0).to(dev)
            self.cell = make_cell(self.coord, (H, H))
            self.grads = []
        elif kind == "liif_train":
            b, h, q = params["b"], params["h"], params["q"]
            self.mlp = _mlp(seed).to(dev)
            self.feat = torch.randn(b, LIIF_C, h, h, generator=g).to(dev).requires_grad_()
            self.coord = (torch.rand(b, q, 2, generator=g) * 2 - 1).to(dev)
            self.cell = torch.full((b, q, 2), 2 / (4 * h), device=dev)
            self.gt = (torch.rand(b, q, 3, generator=g) * 2 - 1).to(dev)
            self.grads = [self.feat, *self.mlp.parameters()]
        elif kind in ("dconv_fwd", "dconv_fwdbwd"):
            n, h, c, s = params["n"], params["h"], 3, 4
            self.image = torch.randn(n, c, h, h, generator=g).to(dev)
            # scaled like a softmax-normalised filter
            self.kernel = (torch.rand(n, DCONV_K * DCONV_K * s * s, h, h, generator=g) / DCONV_K ** 2).to(dev)
            self.dout = torch.randn(n, c, h * s, h * s, generator=g).to(dev)
            train = kind == "dconv_fwdbwd"
            self.image.requires_grad_(train)
            self.kernel.requires_grad_(train)
            self.grads = [self.image, self.kernel] if train else []
        else:
            raise ValueError(f"unknown case kind {kind!r}")

    def reset(self):
        for t in self.grads:  # fresh gradients every round: every round does the same work
            t.grad = None

    def fn(self, impl):
        kind = self.kind
        if kind == "liif_infer":
            def call():
                with torch.no_grad():
                    return [_liif(impl, self.feat, self.coord, self.cell, self.mlp)]
        elif kind == "liif_train":
            def call():
                self.reset()
                out = _liif(impl, self.feat, self.coord, self.cell, self.mlp)
                (out - self.gt).abs().mean().backward()
                return [out.detach()]
        else:
            def run():
                if impl == "reference":
                    return PixelConv(4, depthwise=True)(self.image, self.kernel)
                return dynamic_conv(self.image, self.kernel, kernel_size=DCONV_K, scale=4, backend=impl)
            if kind == "dconv_fwd":
                def call():
                    with torch.no_grad():
                        return [run()]
            else:
                def call():
                    self.reset()
                    out = run()
                    out.backward(self.dout)
                    return [out.detach(), self.image.grad, self.kernel.grad]
        return call


def case_title(name, quick):
    title, _, full, small = CASES[name]
    params = small if quick else full
    return title.format(H=4 * params.get("h", 0), **params)


def implementations(device):
    """reference + the fused backends that run on ``device`` (the Triton interpreter is not timed)."""
    avail = availability("liif_query")
    dc = availability("dynamic_conv")
    fused = ("cpu", "torch") if torch.device(device).type == "cpu" else ("triton", "torch")
    ok = [b for b in fused if avail[b][0] and dc[b][0]
          and not (b == "triton" and os.environ.get("TRITON_INTERPRET", "0") == "1")]
    return ["reference"] + ok


# ----------------------------------------------------------------------------------------- memory

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _malloc_trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_peak(fn):
    gc.collect()
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    base = status_kib("VmRSS")
    out = fn()
    return out, max(0, status_kib("VmHWM") - base) * 1024


def _profiler_peak(fn):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    level = peak = 0
    events = [e for e in prof.events() if e.name == "[memory]"]
    for e in sorted(events, key=lambda e: e.time_range.start):
        level += e.cpu_memory_usage
        peak = max(peak, level)
    return out, peak


def cpu_memory_method():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        status_kib("VmHWM")
        return "rss"
    except OSError:
        return "profiler"


def measure_peak(fn, device, method=None):
    """(fn's result, peak extra bytes during the call)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, torch.cuda.max_memory_allocated(device) - base
    if (method or cpu_memory_method()) == "rss":
        return _rss_peak(fn)
    return _profiler_peak(fn)


# ----------------------------------------------------------------------------------------- timing

def time_rounds(fns, rounds, device):
    """{impl: [ms, ...]}: rounds interleaved across implementations."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times = {impl: [] for impl in fns}
    for _ in range(rounds):
        for impl, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            result = fn()
            sync()
            times[impl].append(1e3 * (time.perf_counter() - t0))
            del result
    return times


def rel_err(got, ref):
    """Worst max|got - ref| / max|ref| over the returned tensors."""
    worst = 0.0
    for g, r in zip(got, ref):
        r = r.detach().double()
        worst = max(worst, ((g.detach().double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item())
    return worst


def bench_case(name, device, impls, rounds, quick, log=print):
    """One case on one device: a list of result rows, one per implementation."""
    _, kind, full, small = CASES[name]
    tiny = Case(kind, TINY[kind], device)
    for impl in impls:
        tiny.fn(impl)()
    del tiny
    case = Case(kind, small if quick else full, device)
    method = cpu_memory_method() if torch.device(device).type == "cpu" else "cuda allocator"
    first, peak = {}, {}
    for impl in impls:
        if case.device.type == "cuda":  # compile / autotune at this size before measuring (cheap on a GPU)
            case.fn(impl)()
        case.reset()
        first[impl], peak[impl] = measure_peak(case.fn(impl), device, method)
    if name in LARGE and not quick:
        rounds = min(rounds, 3)
    times = time_rounds({impl: case.fn(impl) for impl in impls}, rounds, device)
    rows = []
    for impl in impls:
        t = times[impl]
        rows.append({
            "device": torch.device(device).type, "case": name, "title": case_title(name, quick), "impl": impl,
            "times_ms": t, "median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t),
            "rounds": rounds, "peak_mib": peak[impl] / 2**20, "memory_method": method,
            "rel_err": None if impl == "reference" else rel_err(first[impl], first["reference"]),
        })
    ref = rows[0]
    for row in rows:
        row["speedup"] = ref["median_ms"] / row["median_ms"]
        # a page is the resolution of the RSS figure: keeps the ratio finite for near-zero peaks
        row["memory_ratio"] = max(ref["peak_mib"], PAGE / 2**20) / max(row["peak_mib"], PAGE / 2**20)
        log(f"  [{row['device']}] {name:17s} {row['impl']:9s} {row['median_ms']:10.2f} ms  "
            f"speedup {row['speedup']:6.2f}x  peak {row['peak_mib']:9.2f} MiB  "
            f"memory ratio {row['memory_ratio']:6.2f}x")
    return rows


# ----------------------------------------------------------------------------------------- report

def cpu_model():
    """The CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def machine_info():
    cpu = cpu_model()
    info = {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical, torch threads {torch.get_num_threads()}",
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    if hasattr(os, "getloadavg"):
        info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def markdown(info, rows, rounds):
    lines = ["# fastliif bench", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    fewer = sorted({r["title"] for r in rows if r["rounds"] < rounds})
    lines += [f"- timing: median of {rounds} rounds" + (f" ({', '.join(fewer)}: 3)" if fewer else "")
              + ", interleaved across implementations, after a tiny warm-up call and a full-size call "
              "(the one whose memory is measured); fp32",
              "- peak memory: " + ("extra resident memory of one call (VmHWM - VmRSS before, after malloc_trim)"
                                   if any(r["memory_method"] == "rss" for r in rows) else
                                   "the torch profiler's CPU allocations during one call")
              + ("; CUDA: max_memory_allocated - allocated before" if any(r["device"] == "cuda" for r in rows)
                 else ""),
              "- speedup and memory ratio: reference / implementation; error: max |fused - reference| / "
              "max |reference| over the output (and both gradients of dynamic_conv fwd+bwd)",
              "- a load average above the core count means other processes shared the CPU: absolute ms are "
              "then inflated; the speedups, from interleaved rounds, are the robust numbers",
              "",
              "| device | case | implementation | median ms | speedup | peak MiB | memory ratio | error |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        err = "-" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
        lines.append(f"| {r['device']} | {r['title']} | {r['impl']} | {r['median_ms']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['peak_mib']:.2f} | {r['memory_ratio']:.1f}x | {err} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Bar chart: speedup and memory ratio of each fused implementation per case (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    keys = list(dict.fromkeys((r["device"], r["case"]) for r in rows))
    titles = {(r["device"], r["case"]): r["title"] for r in rows}
    devices = {d for d, _ in keys}
    fused = list(dict.fromkeys((r["device"], r["impl"]) for r in rows if r["impl"] != "reference"))
    impl_names = list(dict.fromkeys(i for _, i in fused))
    table = {(r["device"], r["case"], r["impl"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.4 * len(keys) + 2), 5.4))
    width = 0.8 / max(1, len(impl_names))
    for ax, metric, label in ((axes[0], "speedup", "speedup (reference / fused, median time)"),
                              (axes[1], "memory_ratio", "peak memory ratio (reference / fused)")):
        top = 1.0
        for k, impl in enumerate(impl_names):
            xs, vals = [], []
            for i, key in enumerate(keys):
                row = table.get((*key, impl))
                if row is not None:
                    xs.append(i + (k - (len(impl_names) - 1) / 2) * width)
                    vals.append(row[metric])
            bars = ax.bar(xs, vals, width, label=f"fused, backend={impl}")
            top = max([top, *vals])
            ax.bar_label(bars, labels=[f"{v:.2g}x" for v in vals], fontsize=7)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(top=top * 2)  # room for the bar labels and the legend
        ax.yaxis.set_major_locator(FixedLocator([2.0 ** k for k in range(-10, 11)]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(label)
        names = [(f"[{d}] " if len(devices) > 1 else "") + titles[(d, c)] for d, c in keys]
        ax.set_xticks(range(len(keys)), [_wrap(n) for n in names], fontsize=7)
        ax.legend(fontsize=8)
    fig.suptitle("fastliif fused ops vs the reference (official semantics); > 1 is better")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _wrap(text, width=16):
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return "\n".join(lines + [cur])


def run(out_dir="fastliif-bench", quick=False, rounds=None, devices=None, cases=None, log=print):
    """Benchmark every case on every device; write bench.md, bench.png and bench.json to ``out_dir``.
    Returns (rows, {"md": path, "png": path, "json": path}, markdown text)."""
    rounds = rounds or (3 if quick else 5)
    devices = devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    info = machine_info()
    rows = []
    start = time.perf_counter()
    for device in devices:
        impls = implementations(device)
        log(f"{device}: {', '.join(impls)}")
        for name in cases or CASES:
            rows += bench_case(name, device, impls, rounds, quick, log)
    info["wall time"] = f"{time.perf_counter() - start:.1f} s"
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"bench.{ext}") for ext in ("md", "png", "json")}
    text = markdown(info, rows, rounds)
    with open(paths["md"], "w") as f:
        f.write(text)
    with open(paths["json"], "w") as f:
        json.dump({"machine": info, "quick": quick, "rounds": rounds, "results": rows}, f, indent=2)
    plot(rows, paths["png"])
    for r in rows:
        for key in ("speedup", "memory_ratio"):
            if not (math.isfinite(r[key]) and r[key] > 0):
                raise RuntimeError(f"{r['case']}/{r['impl']}: {key} {r[key]} is not a positive number")
    return rows, paths, text


__all__ = ["run", "Case", "CASES", "bench_case", "measure_peak", "time_rounds", "markdown", "plot", "implementations"]
