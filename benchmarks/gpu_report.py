"""GPU report of the fused LIIF query (issue 3): one command, everything side by side.

    python benchmarks/gpu_report.py            # on a CUDA machine; writes benchmarks/results/gpu_report.{md,png}
    python benchmarks/gpu_report.py --smoke    # tiny shapes, any machine (CPU: Triton interpreter), checks the script

Cases (EDSR-baseline LIIF, 580 -> 256x4 -> 3, random weights: timings do not depend on them):
- inference from encoder features: x4 to 2040x1356 (2.77M queries), x2/x8/x12 to the same
  output, x4 to 3840x2160; reference = official query_rgb through batched_predict-style
  chunks of 30000 queries, fused = one liif_query call (triton backend); each at
  fp32 (IEEE), tf32 and bf16 autocast: median of CUDA-event timings and peak extra memory;
- training step, B=16, 48x48 inputs, sample_q 2304: whole step (encoder, query, L1 loss,
  backward, Adam) and the query's forward+backward alone, reference vs fused, peak memory;
- achieved TFLOP/s of the fused query (MACs counted as DESIGN.md section 4) against the
  measured dense matmul peaks (bf16, tf32, fp32 FFMA) of this GPU;
- UDVD dynamic convolution (dconv_cases.py: N=16 C=3 64x64 k=5 x2 and x4, N=1 C=3 339x510 x4,
  N=4 C=64 64x64 x1), fp32: the seed's PixelConv vs fastliif.ops.dynamic_conv(backend="triton"),
  forward (no_grad) and forward+backward (out.backward(dout)), median CUDA-event time, peak extra
  memory, and achieved GB/s of the fused op counting the minimal bytes (forward: image, kernel
  read once, output written once; backward: dout, image, kernel read once, both grads written
  once) against the measured device-to-device copy bandwidth (y.copy_(x), 1 GiB, 2*bytes/time).
  In --smoke it runs on tiny shapes, on CPU through the Triton interpreter when that is available.

    python benchmarks/gpu_report.py --only dconv    # one part (liif or dconv): each fits in 10 minutes
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

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# decoder width, feature channels, encoder blocks; --smoke shrinks them for the interpreter
CFG = {"hidden": 256, "C": 64, "resblocks": 16}
SMOKE_CFG = {"hidden": 32, "C": 8, "resblocks": 1}

if not torch.cuda.is_available():  # CPU smoke runs go through the Triton interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fastliif  # noqa: E402
from fastliif.reference import make_cell, make_coord  # noqa: E402

sys.path.insert(0, HERE)
import dconv_cases  # noqa: E402

# tiny dynamic_conv shapes of --smoke (the Triton interpreter runs them on CPU in seconds)
SMOKE_DCONV = {"tiny_s2": ("N=2, C=3, 6x7, k=5, x2", dict(n=2, c=3, h=6, w=7, scale=2)),
               "tiny_c8_s1": ("N=1, C=8, 5x6, k=5, x1", dict(n=1, c=8, h=5, w=6, scale=1))}


class Timer:
    """Median milliseconds of fn(); CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device, rounds, warmup=1):
        self.device, self.rounds, self.warmup = device, rounds, warmup

    def __call__(self, fn):
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.rounds):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times)


def peak_extra_mib(device, fn):
    """Peak memory above what was allocated before the call (MiB); None off-GPU."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


class precision_mode:
    """fp32 (IEEE), tf32 or bf16 autocast for the duration of a block."""

    def __init__(self, name, device):
        self.name, self.device = name, device

    def __enter__(self):
        self.saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
                      torch.backends.cudnn.allow_tf32)
        tf32 = self.name == "tf32"
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        self.amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.name == "bf16")
        self.amp.__enter__()

    def __exit__(self, *exc):
        self.amp.__exit__(*exc)
        torch.set_float32_matmul_precision(self.saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved[1:]


def make_models(device, backend):
    enc = {"name": "edsr-baseline",
           "args": {"no_upsampling": True, "n_feats": CFG["C"], "n_resblocks": CFG["resblocks"]}}
    imnet = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [CFG["hidden"]] * 4}}
    torch.manual_seed(0)
    ref = fastliif.reference.LIIF(enc, imnet).to(device)
    fused = fastliif.nn.LIIF(enc, imnet, backend=backend).to(device)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def fused_macs(q, h, w, corners=4, n_hidden=3, out_dim=3):
    """MACs of one fused query pass (DESIGN.md s4): projection conv + per-corner rank-4 term and
    hidden layers + one last layer per query."""
    hidden, in_feat = CFG["hidden"], CFG["C"] * 9
    return h * w * hidden * in_feat + q * corners * (4 * hidden + n_hidden * hidden * hidden) + q * hidden * out_dim


def reference_macs(q, corners=4, n_hidden=3, out_dim=3):
    hidden, in_dim = CFG["hidden"], CFG["C"] * 9 + 4
    return q * corners * (in_dim * hidden + n_hidden * hidden * hidden + hidden * out_dim)


def matmul_peaks(device, n):
    """Measured dense matmul TFLOP/s: bf16, tf32 and fp32 (FFMA)."""
    peaks = {}
    timer = Timer(device, rounds=5)
    for name, dtype in (("bf16", torch.bfloat16), ("tf32", torch.float32), ("fp32", torch.float32)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        with precision_mode("tf32" if name == "tf32" else "fp32", device):
            ms = timer(lambda: a @ b)
        peaks[name] = 2 * n**3 / (ms * 1e-3) / 1e12
    return peaks


def inference_cases(smoke):
    if smoke:
        return [("x4 24x20", 4, (6, 5), (24, 20))]
    out = (1356, 2040)  # (H, W) of a DIV2K-sized output
    cases = []
    for s in (2, 4, 8, 12):
        cases.append((f"x{s} {out[1]}x{out[0]}", s, (round(out[0] / s), round(out[1] / s)), out))
    cases.append(("x4 3840x2160", 4, (540, 960), (2160, 3840)))
    return cases


def run_inference(device, timer, smoke, precisions, bsize):
    ref, fused = make_models(device, "triton")
    rows = []
    for name, scale, (h, w), (H, W) in inference_cases(smoke):
        feat = torch.randn(1, CFG["C"], h, w, device=device)
        coord = make_coord((H, W)).unsqueeze(0).to(device)
        cell = make_cell(coord, (H, W))
        ref.feat = fused.feat = feat
        q = H * W

        def reference():
            with torch.no_grad():
                return torch.cat([ref.query_rgb(coord[:, i:i + bsize], cell[:, i:i + bsize])
                                  for i in range(0, q, bsize)], dim=1)

        def fused_call():
            with torch.no_grad():
                return fused.query_rgb(coord, cell)

        for prec in precisions:
            with precision_mode(prec, device):
                err = ((fused_call().float() - reference().float()).abs().max()).item()
                t_ref, t_fused = timer(reference), timer(fused_call)
                m_ref, m_fused = peak_extra_mib(device, reference), peak_extra_mib(device, fused_call)
            tflops = 2 * fused_macs(q, h, w) / (t_fused * 1e-3) / 1e12
            rows.append(dict(case=name, precision=prec, queries=q, ref_ms=t_ref, fused_ms=t_fused,
                             speedup=t_ref / t_fused, ref_mib=m_ref, fused_mib=m_fused, max_abs_err=err,
                             fused_tflops=tflops, ref_tflops=2 * reference_macs(q) / (t_ref * 1e-3) / 1e12))
            print(f"  {name:18s} {prec:5s} ref {t_ref:9.2f} ms  fused {t_fused:8.2f} ms  {t_ref / t_fused:5.2f}x  "
                  f"err {err:.1e}", flush=True)
    return rows


def run_training(device, timer, smoke, precisions):
    B, size, sample_q = (2, 8, 24) if smoke else (16, 48, 2304)
    rows = []
    for prec in precisions:
        for impl in ("reference", "fused"):
            ref, fused = make_models(device, "triton")
            model = ref if impl == "reference" else fused
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            torch.manual_seed(1)
            inp = torch.rand(B, 3, size, size, device=device)
            coord = torch.rand(B, sample_q, 2, device=device) * 2 - 1
            cell = torch.full_like(coord, 2 / (size * 4))
            gt = torch.rand(B, sample_q, 3, device=device)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = (model(inp, coord, cell).float() - gt).abs().mean()
                loss.backward()
                opt.step()

            feat = model.gen_feat(inp).detach().requires_grad_(True)

            def query_step():
                model.feat = feat
                model.query_rgb(coord, cell).float().abs().mean().backward()

            with precision_mode(prec, device):
                t_step, t_query = timer(step), timer(query_step)
                m_step = peak_extra_mib(device, step)
            rows.append(dict(precision=prec, impl=impl, step_ms=t_step, query_ms=t_query, step_mib=m_step))
            print(f"  train {prec:5s} {impl:9s} step {t_step:8.2f} ms  query fwd+bwd {t_query:8.2f} ms", flush=True)
    return rows


def copy_bandwidth(device, nbytes):
    """Measured device-to-device copy bandwidth (GB/s): y.copy_(x) reads and writes nbytes each."""
    x = torch.empty(nbytes // 4, device=device, dtype=torch.float32).uniform_()
    y = torch.empty_like(x)
    ms = Timer(device, rounds=10 if device.type == "cuda" else 3)(lambda: y.copy_(x))
    return 2 * nbytes / (ms * 1e-3) / 1e9


def rel_err(ref, got):
    return max(((g.float() - r.float()).abs().max() / r.float().abs().max()).item() for r, g in zip(ref, got))


def run_dconv(device, timer, smoke):
    """Reference PixelConv vs fused triton dynamic_conv, forward and forward+backward, fp32."""
    cases = SMOKE_DCONV if smoke else dconv_cases.CASES
    rows = []
    for name, (title, params) in cases.items():
        case = dconv_cases.Case(name, device=device, params=params)
        fwd_bytes, bwd_bytes = case.bytes()
        for pass_ in dconv_cases.PASSES:
            ref_fn, fused_fn = case.fn("reference", pass_), case.fn("triton", pass_)
            with precision_mode("fp32", device):  # IEEE fp32 matmuls in the reference
                err = rel_err(case.results("reference", pass_), case.results("triton", pass_))
                t_ref, t_fused = timer(ref_fn), timer(fused_fn)
                m_ref, m_fused = peak_extra_mib(device, ref_fn), peak_extra_mib(device, fused_fn)
            nbytes = fwd_bytes if pass_ == "fwd" else fwd_bytes + bwd_bytes
            rows.append(dict(case=title, pass_=pass_, ref_ms=t_ref, fused_ms=t_fused, speedup=t_ref / t_fused,
                             ref_mib=m_ref, fused_mib=m_fused, mbytes=nbytes / 1e6, rel_err=err,
                             fused_gbs=nbytes / (t_fused * 1e-3) / 1e9, ref_gbs=nbytes / (t_ref * 1e-3) / 1e9))
            flag = "" if err < dconv_cases.TOL else f"  MISMATCH (>= {dconv_cases.TOL:.0e})"
            print(f"  dconv {title:40s} {pass_:6s} ref {t_ref:9.2f} ms  fused {t_fused:8.2f} ms  "
                  f"{t_ref / t_fused:6.2f}x  {rows[-1]['fused_gbs']:8.1f} GB/s  rel err {err:.1e}{flag}", flush=True)
        del case
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def environment(device):
    info = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
            "python": platform.python_version(), "fastliif": fastliif.__version__}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "absent"
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = "unknown"
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()}), Triton interpreter"
    return info


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def write_report(path_md, info, peaks, inf_rows, train_rows, smoke, dconv_rows=(), copy_gbs=None):
    lines = ["# fastliif GPU report" + (" (SMOKE RUN: tiny shapes, not a measurement)" if smoke else ""),
             "", *[f"- {k}: {v}" for k, v in info.items()],
             "- timing: median of CUDA-event timings after a warm-up; memory: peak allocated above the inputs"]
    if inf_rows or train_rows:
        lines += ["", "## LIIF query", "",
                  "- reference: official query_rgb in chunks of 30000 queries (batched_predict); fused: one call",
                  "", "Measured dense matmul peaks (TFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()),
                  "", "| case | precision | queries | reference ms | fused ms | speedup | reference MiB | fused MiB |"
                  " fused TFLOP/s | % of peak | max abs err |", "|" + "---|" * 11]
        peak_of = {"fp32": peaks.get("fp32"), "tf32": peaks.get("tf32"), "bf16": peaks.get("bf16")}
        for r in inf_rows:
            pct = 100 * r["fused_tflops"] / peak_of[r["precision"]] if peak_of.get(r["precision"]) else None
            lines.append(f"| {r['case']} | {r['precision']} | {r['queries']:,} | {r['ref_ms']:.2f} | "
                         f"{r['fused_ms']:.2f} | {r['speedup']:.2f}x | {fmt(r['ref_mib'], '.0f')} | "
                         f"{fmt(r['fused_mib'], '.0f')} | {r['fused_tflops']:.1f} | {fmt(pct, '.0f')} | "
                         f"{r['max_abs_err']:.1e} |")
        lines += ["", "| training (B=16, 48x48, sample_q 2304) | impl | step ms | query fwd+bwd ms | step peak MiB |",
                  "|---|---|---|---|---|"]
        for r in train_rows:
            lines.append(f"| {r['precision']} | {r['impl']} | {r['step_ms']:.2f} | {r['query_ms']:.2f} | "
                         f"{fmt(r['step_mib'], '.0f')} |")
    if dconv_rows:
        lines += ["", "## dynamic_conv (UDVD PixelConv vs fused triton, fp32)", "",
                  "- reference: the seed's PixelConv(scale, depthwise=True); fused: fastliif.ops.dynamic_conv("
                  "backend='triton'); fwd under no_grad, fwd+bwd = call + out.backward(dout)",
                  "- minimal bytes: fwd reads image and kernel once and writes the output once; bwd reads dout, "
                  "image and kernel once and writes both grads once (fwd+bwd counts both)",
                  f"- measured device-to-device copy bandwidth (y.copy_(x), 2*bytes/time): {fmt(copy_gbs, '.0f')} GB/s",
                  "- rel err: max abs diff / max abs reference over the output (and both grads for fwd+bwd)",
                  "", "| dynamic_conv case | pass | reference ms | fused ms | speedup | reference MiB | fused MiB |"
                  " minimal MB | fused GB/s | % of copy bandwidth | reference GB/s | rel err |", "|" + "---|" * 12]
        for r in dconv_rows:
            pct = 100 * r["fused_gbs"] / copy_gbs if copy_gbs else None
            lines.append(f"| {r['case']} | {'fwd' if r['pass_'] == 'fwd' else 'fwd+bwd'} | {r['ref_ms']:.3f} | "
                         f"{r['fused_ms']:.3f} | {r['speedup']:.2f}x | {fmt(r['ref_mib'], '.0f')} | "
                         f"{fmt(r['fused_mib'], '.0f')} | {r['mbytes']:.1f} | {r['fused_gbs']:.1f} | "
                         f"{fmt(pct, '.0f')} | {r['ref_gbs']:.1f} | {r['rel_err']:.1e} |")
    with open(path_md, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_chart(path_png, inf_rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    cases = list(dict.fromkeys(r["case"] for r in inf_rows))
    precs = list(dict.fromkeys(r["precision"] for r in inf_rows))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(precs)
    for i, p in enumerate(precs):
        vals = [next(r["speedup"] for r in inf_rows if r["case"] == c and r["precision"] == p) for c in cases]
        bars = ax.bar([j + i * width for j in range(len(cases))], vals, width, label=p)
        ax.bar_label(bars, fmt="%.1fx", fontsize=8)
    ax.set_xticks([j + width * (len(precs) - 1) / 2 for j in range(len(cases))], cases, fontsize=8)
    ax.axhline(1, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("speedup vs reference (median)")
    ax.set_title("fused LIIF query (triton) vs official query_rgb + batched_predict")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)


def write_dconv_chart(path_png, rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    cases = list(dict.fromkeys(r["case"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.4
    for i, (pass_, label) in enumerate((("fwd", "forward"), ("fwdbwd", "forward + backward"))):
        vals = [next(r["speedup"] for r in rows if r["case"] == c and r["pass_"] == pass_) for c in cases]
        bars = ax.bar([j + i * width for j in range(len(cases))], vals, width, label=label)
        ax.bar_label(bars, fmt="%.1fx", fontsize=8)
    ax.set_xticks([j + width / 2 for j in range(len(cases))], [c.replace(", ", "\n", 1) for c in cases], fontsize=8)
    ax.axhline(1, color="gray", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_ylabel("speedup vs PixelConv (median, log scale)")
    ax.set_title("fused dynamic_conv (triton) vs UDVD's PixelConv")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes: check the script on any machine")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=RESULTS, help="folder for gpu_report.md/.png")
    parser.add_argument("--only", choices=("liif", "dconv"), help="run one part (gpu_report.md then holds only it)")
    args = parser.parse_args(argv)
    if args.smoke:
        CFG.update(SMOKE_CFG)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device: run with --smoke to check the script on CPU")
    precisions = ["fp32"] if device.type != "cuda" else ["fp32", "tf32", "bf16"]
    timer = Timer(device, rounds=args.rounds or (1 if args.smoke else 10), warmup=0 if args.smoke else 1)
    info = environment(device)
    print("device:", info["device"], flush=True)
    peaks, inf_rows, train_rows, dconv_rows, copy_gbs = {}, [], [], [], None
    if args.only in (None, "liif"):
        peaks = matmul_peaks(device, 256 if args.smoke else 8192) if device.type == "cuda" else {}
        inf_rows = run_inference(device, timer, args.smoke, precisions, bsize=30000 if not args.smoke else 500)
        train_rows = run_training(device, timer, args.smoke, precisions)
    if args.only in (None, "dconv"):
        triton_ok, why = fastliif.ops.availability()["triton"]
        if triton_ok:
            copy_gbs = copy_bandwidth(device, 2**30 if device.type == "cuda" else 2**24)
            print(f"  device-to-device copy bandwidth {copy_gbs:.0f} GB/s", flush=True)
            dconv_rows = run_dconv(device, timer, args.smoke)
        else:
            print(f"  dynamic_conv skipped: triton backend unavailable ({why})", flush=True)
    os.makedirs(args.out, exist_ok=True)
    stem = "gpu_report_smoke" if args.smoke else "gpu_report"
    write_report(os.path.join(args.out, stem + ".md"), info, peaks, inf_rows, train_rows, args.smoke,
                 dconv_rows, copy_gbs)
    if inf_rows:
        write_chart(os.path.join(args.out, stem + ".png"), inf_rows)
    if dconv_rows:
        write_dconv_chart(os.path.join(args.out, stem + "_dconv.png"), dconv_rows)
    print("wrote", os.path.join(args.out, stem + ".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
