"""The one writer: bench.md (the table and the method), bench.json (every number, raw times
included) and bench.png (speedup and memory ratio per case), all through fastliif.atomic."""
import os

from .. import atomic
from . import targets as T

FILES = ("md", "json", "png")


def _fmt(v, spec, suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def markdown(result):
    rows, peaks = result["results"], result["peaks"]
    lines = ["# fastliif bench", ""]
    lines += [f"- {k}: {v}" for k, v in result["machine"].items()]
    for dev, p in peaks.items():
        if p:
            lines.append(f"- measured peaks ({dev}): dense matmul " + ", ".join(
                f"{k} {v:.3g} TFLOP/s" for k, v in p["matmul_tflops"].items())
                + f" ({p['matmul_n']}^3, random operands); copy {p['copy_gbs']:.4g} GB/s "
                  f"(y.copy_(x) of {p['copy_bytes'] / 2**20:.0f} MiB, bytes read + written)")
    fewer = sorted({f"{r['case']}: {r['rounds']}" for r in rows if r["rounds"] < result["rounds"]})
    lines += [f"- sizes: {result['size']}; timing: median of {result['rounds']} rounds"
              + (f" ({', '.join(fewer)})" if fewer else "")
              + ", interleaved across implementations, after a tiny warm-up call (and on CUDA a full-size one) "
                "and the call whose memory is measured; CPU: time.perf_counter, CUDA: CUDA events",
              "- reference: the official code (query_rgb through batched_predict in chunks of 30,000 queries; "
              "the UDVD seed's PixelConv; the -reference models); the other implementations are the fused "
              "op's backends",
              "- peak memory: " + "; ".join(sorted({_MEMORY[r["memory_method"]] for r in rows})),
              "- speedup and memory ratio: reference / implementation at the same precision; error: "
              "max |fused - reference| / max |reference| over the output (and both gradients of dynamic_conv "
              "fwd+bwd); TFLOP/s and GB/s: counted work (liif_macs, minimal bytes) / median time, with the "
              "fraction of the measured peak of that precision / of the copy bandwidth",
              "- a load average above the core count means other processes shared the CPU: absolute ms are "
              "then inflated; the speedups, from interleaved rounds, are the robust numbers"]
    if any(r["targets"] for r in rows):
        lines.append("- targets (the Triton issue's, on an H100/H200; GPU kernel rows only): " + "; ".join(
            sorted({x["target"] for r in rows for x in r["targets"]})))
    lines += ["", "| device | case | precision | implementation | median ms | speedup | peak MiB | memory ratio | "
              "TFLOP/s (of peak) | GB/s (of copy) | error | targets |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        tf = "-" if r["tflops"] is None else f"{r['tflops']:.3g}" + (
            "" if r["peak_fraction"] is None else f" ({100 * r['peak_fraction']:.0f}%)")
        gb = "-" if r["gbs"] is None else f"{r['gbs']:.4g}" + (
            "" if r["bandwidth_fraction"] is None else f" ({100 * r['bandwidth_fraction']:.0f}%)")
        tg = "; ".join(T.fmt(x) for x in r["targets"]) or "-"
        lines.append(f"| {r['device']} | {r['title']} | {r['precision']} | {r['impl']} | {r['median_ms']:.2f} | "
                     f"{r['speedup']:.2f}x | {r['peak_mib']:.2f} | {r['memory_ratio']:.1f}x | {tf} | {gb} | "
                     f"{_fmt(r['rel_err'], '.1e')} | {tg} |")
    if result["errors"]:
        lines += ["", "Failed cases:", ""] + [f"- [{e['device']}] {e['case']}: {e['error']}" for e in result["errors"]]
    return "\n".join(lines) + "\n"


_MEMORY = {"rss": "CPU: extra resident memory of one call (VmHWM - VmRSS before, after malloc_trim)",
           "profiler": "CPU: the torch profiler's allocations during one call",
           "cuda allocator": "CUDA: max_memory_allocated during one call - allocated before"}


def paths(out_dir):
    return {ext: os.path.join(out_dir, f"bench.{ext}") for ext in FILES}


def write(out_dir, result, text=None, chart=True):
    """bench.md, bench.json and (chart) bench.png in out_dir, each written atomically."""
    os.makedirs(out_dir, exist_ok=True)
    out = paths(out_dir)
    atomic.write_text(out["md"], text if text is not None else markdown(result))
    atomic.write_json(out["json"], result, indent=1)
    if chart:
        plot(result["results"], out["png"])
    else:
        del out["png"]
    return out


def require_matplotlib():
    """Raises ImportError with the fix when the chart cannot be drawn (checked before any work)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("the chart needs matplotlib (pip install matplotlib), or pass --no-chart") from None


def _label(row, many_devices):
    prec = "" if row["precision"] == "fp32" else f" [{row['precision']}]"
    return (f"[{row['device']}] " if many_devices else "") + row["title"] + prec


def plot(rows, path):
    """Bar chart: speedup and memory ratio of each fused implementation per case (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    keys = list(dict.fromkeys((r["device"], r["case"], r["precision"]) for r in rows))
    many = len({k[0] for k in keys}) > 1
    labels = {(r["device"], r["case"], r["precision"]): _label(r, many) for r in rows}
    impls = list(dict.fromkeys(r["impl"] for r in rows if r["impl"] != "reference"))
    table = {(r["device"], r["case"], r["precision"], r["impl"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.2 * len(keys) + 4), 5.6))
    width = 0.8 / max(1, len(impls))
    for ax, metric, label in ((axes[0], "speedup", "speedup (reference / fused, median time)"),
                              (axes[1], "memory_ratio", "peak memory ratio (reference / fused)")):
        top = 1.0
        for k, impl in enumerate(impls):
            xs, vals = [], []
            for i, key in enumerate(keys):
                row = table.get((*key, impl))
                if row is not None:
                    xs.append(i + (k - (len(impls) - 1) / 2) * width)
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
        ax.set_xticks(range(len(keys)), [_wrap(labels[k]) for k in keys], fontsize=6)
        ax.legend(fontsize=8)
    fig.suptitle("fastliif fused ops vs the reference (official code); > 1 is better")
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=110)
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
