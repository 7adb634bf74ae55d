"""The phases of scripts/gpu_triage.sh: correctness of every GPU kernel first, then speed, in
priority order. Each result is one JSON object, printed and appended to OUT/triage.jsonl as
soon as it exists, so a phase killed by its time cap still leaves its finished checks.

    python scripts/gpu_triage.py PHASE [--smoke] [--out DIR]
    PHASE: env | liif | dconv | speed | sanitize_liif | sanitize_dconv | sanitize_cuda | tune | summary

Backends: every phase covers backend "triton" and, where the extension has them, backend
"cuda" (torch.ops.fastliif CUDA kernels); an absent backend is one row {"available": false}.
Autotuning: one configuration per kernel (compile once: seconds, not minutes) except in
``tune``, which times every configuration at real sizes and records what the autotuner picks.
``-p gpu_triage`` also makes this file a pytest plugin that does the same for the GPU tests.
--smoke: tiny shapes on CPU through TRITON_INTERPRET=1 (checks this script without a GPU).

triage.jsonl, one JSON object per line (t: seconds since its phase started):
- step records (written by gpu_triage.sh after each step): step, status (ok | failed | timeout |
  skipped), rc, seconds, sanitizer_errors (compute-sanitizer's ERROR SUMMARY count, "" if none);
- env: torch, triton, cuda, python, fastliif, device, gpu, sms, cc, mem_gib, driver, cudnn_allow_tf32,
  matmul_precision, liif_query / dynamic_conv ({backend: [available, reason]}), tools, kernels;
- liif / sanitize_liif / sanitize_cuda checks: case, backend, N, H, precision, first_call_s,
  err_vs_fp64, err_vs_torch_backend, torch_backend_err_vs_fp64, finite, fwd_run_to_run_max_abs,
  [grad_rel_l2_max, grad_worst, grad_run_to_run_max_abs], ok (within TOL / GRAD_TOL, forward
  bit-identical run to run);
- dconv / sanitize_dconv checks: case, backend, mode, dtype, first_call_s, err_out, err_dimg, err_dker,
  finite, run_to_run_max_abs, ok;
- sanitize: PYTORCH_NO_CUDA_MEMORY_CACHING, ok (must be "1" on a GPU);
- a backend that is absent: phase, backend, available: false, reason;
- speed: one row per fastliif.bench result row (device, case, title, precision, impl, median_ms,
  min_ms, max_ms, speedup, peak_mib, memory_ratio, rel_err, tflops, peak_fraction, gbs,
  bandwidth_fraction, targets: [{target, value, need, met}]), then peaks, files, failed;
- tune: kernel, case, config, ms (one per configuration), then kernel, autotune_s, picked;
- summary: steps ({status: count}), checks, failed, targets_met, targets_missed, not_available;
- a phase that raised: phase, error, tb (and the phase exits 1).
"""
import argparse
import copy
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time
import traceback

import torch  # noqa: E402

SMOKE = "--smoke" in sys.argv
if SMOKE:
    os.environ["TRITON_INTERPRET"] = "1"
elif not torch.cuda.is_available():  # as tests/conftest.py: set before any kernel module is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fastliif  # noqa: E402
import fastliif.atomic  # noqa: E402
from fastliif.ops import availability, dynamic_conv, liif_query  # noqa: E402
from fastliif.reference import MLP, dynamic_conv_reference, query_rgb_reference  # noqa: E402

DEV = torch.device("cpu" if SMOKE or not torch.cuda.is_available() else "cuda")
OUT = "."
T0 = time.time()
JSONL = "triage.jsonl"
# relative error bounds (max |got - want| / max |want|) against float64, per operand precision:
# a few fp32 roundings; TF32's 10-bit mantissa; bf16's 7 bits (fp16: 10) through 4 layers
TOL = {"ieee": 1e-5, "tf32": 5e-3, "bf16": 5e-2, "fp16": 1e-2}
GRAD_TOL = {"ieee": 1e-4, "tf32": 2e-2, "bf16": 1e-1, "fp16": 3e-2}  # relative L2, vs the torch backend


def log(**row):
    row["t"] = round(time.time() - T0, 1)
    line = json.dumps(row, default=str)
    print(line, flush=True)
    # Row by row, so a killed phase keeps every finished row; each row rewrites the file through
    # the package's one atomic writer (steps run one after another, so no row is lost to a race).
    from fastliif import atomic
    path = os.path.join(OUT, JSONL)
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    atomic.write_text(path, old + line + "\n")


# ------------------------------------------------------------------------ autotune configurations

_ORIGINAL = {}


def autotuners():
    """{"module.kernel": triton Autotuner} of every Triton kernel of fastliif."""
    from triton.runtime.autotuner import Autotuner

    import fastliif.kernels as kernels
    found = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        mod = importlib.import_module(f"fastliif.kernels.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, Autotuner):
                found[f"{info.name}.{name}"] = obj
                _ORIGINAL.setdefault(obj, list(obj.configs))
    return found


def set_config(tuner, config):
    tuner.configs = [config]
    tuner.cache = {}  # forget choices made with other configurations


def single_config():
    """One configuration per kernel (the middle one of its list): no autotune benchmarking."""
    chosen = {}
    for name, tuner in autotuners().items():
        configs = _ORIGINAL[tuner]
        cfg = configs[len(configs) // 2]
        set_config(tuner, cfg)
        chosen[name] = str(cfg)
    return chosen


def pytest_configure(config):  # `pytest -p gpu_triage`: the GPU tests with one config per kernel
    single_config()


# ----------------------------------------------------------------------------------------- helpers

def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def rel_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def gpu_backends(op):
    """[(backend, available, reason)] for the GPU backends of ``op``."""
    avail = availability(op)
    return [(b, *avail[b]) for b in ("triton", "cuda")]


def mlp_params(C, hidden, seed=0, cell=True, unfold=True):
    torch.manual_seed(seed)
    mlp = MLP(C * (9 if unfold else 1) + 2 + (2 if cell else 0), 3, hidden).to(DEV)
    with torch.no_grad():
        for layer in mlp.layers[0::2]:
            layer.bias.uniform_(-0.3, 0.3)
    lin = list(mlp.layers[0::2])
    return mlp, [m.weight for m in lin], [m.bias for m in lin]


def timed(fn, rounds=5):
    from fastliif.bench import summary, time_rounds, timer_for
    fn()
    sync()
    return summary(time_rounds({"f": fn}, rounds, timer_for(DEV))["f"])["median_ms"]


# ----------------------------------------------------------------------------------------- phases

def phase_env():
    import shutil

    import triton
    info = dict(torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
                python=sys.version.split()[0], fastliif=fastliif.__version__, device=str(DEV),
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                matmul_precision=torch.get_float32_matmul_precision(),
                liif_query=availability("liif_query"), dynamic_conv=availability("dynamic_conv"),
                tools={t: bool(shutil.which(t)) for t in ("nvidia-smi", "compute-sanitizer", "nvcc", "ncu")},
                kernels=sorted(autotuners()))
    if DEV.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, sms=p.multi_processor_count, mem_gib=round(p.total_memory / 2**30, 1),
                    cc=f"{p.major}.{p.minor}")
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["driver"] = f"unknown ({exc})"
    log(phase="env", **info)
    # the shell script reads this to decide whether the CUDA-backend steps have anything to run
    cuda_ok = availability("liif_query")["cuda"][0] or availability("dynamic_conv")["cuda"][0]
    fastliif.atomic.write_text(os.path.join(OUT, "cuda_backend"), "1\n" if cuda_ok else "0\n")


def liif_case(name, B, C, h, w, Q, hidden, flags=(True, True, True), precision="ieee", grad=False, seed=0,
              backend="triton", phase="liif"):
    unfold, ens, cell_on = flags
    mlp, W, b = mlp_params(C, hidden, seed=seed, cell=cell_on, unfold=unfold)
    torch.manual_seed(seed + 1)
    feat = torch.randn(B, C, h, w, device=DEV, requires_grad=grad)
    coord = (torch.rand(B, Q, 2, device=DEV) * 2.2 - 1.1)  # some outside [-1, 1]
    cell = torch.full((B, Q, 2), 2 / (4 * h), device=DEV)
    kw = dict(feat_unfold=unfold, local_ensemble=ens, cell_decode=cell_on)
    run = lambda: liif_query(feat, coord, cell, W, b, backend=backend, precision=precision, **kw)  # noqa: E731
    t = time.time()
    out = run()
    sync()
    t_first = time.time() - t
    out2 = run()
    ref_t = liif_query(feat, coord, cell, W, b, backend="torch", **kw)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref = query_rgb_reference(feat.double(), coord.double(), cell.double(), copy.deepcopy(mlp).double(), *flags)
    row = dict(phase=phase, case=name, backend=backend, N=B * Q, H=hidden[0], precision=precision,
               first_call_s=round(t_first, 1), err_vs_torch_backend=rel(out, ref_t), err_vs_fp64=rel(out, ref),
               torch_backend_err_vs_fp64=rel(ref_t, ref), finite=bool(torch.isfinite(out).all()),
               fwd_run_to_run_max_abs=(out - out2).abs().max().item())
    ok = row["finite"] and row["err_vs_fp64"] < TOL[precision] and row["fwd_run_to_run_max_abs"] == 0
    if grad:
        g = torch.randn_like(out)
        params = [feat] + W + b
        got = torch.autograd.grad(out, params, g)
        got2 = torch.autograd.grad(run(), params, g)
        want = torch.autograd.grad(ref_t, params, g)
        errs = [rel_l2(a, c) for a, c in zip(got, want)]
        names = ["feat"] + [f"W{i}" for i in range(len(W))] + [f"b{i}" for i in range(len(b))]
        row.update(grad_rel_l2_max=max(errs), grad_worst=names[errs.index(max(errs))],
                   grad_run_to_run_max_abs=max((a - c).abs().max().item() for a, c in zip(got, got2)))
        ok = ok and row["grad_rel_l2_max"] < GRAD_TOL[precision] and all(
            bool(torch.isfinite(x).all()) for x in got)
    row["ok"] = bool(ok)
    log(**row)


def _each_backend(op, phase, fn):
    for backend, ok, why in gpu_backends(op):
        if not ok:
            log(phase=phase, backend=backend, available=False, reason=why)
            continue
        try:
            fn(backend)
        except Exception as exc:  # one backend failing must not hide the other
            log(phase=phase, backend=backend, error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc()[-2000:],
                ok=False)


def phase_liif():
    s = SMOKE

    def checks(backend):
        k = dict(backend=backend)
        # the real LIIF decoder; many tiles per program (persistent loop, barrier, scratch reuse, the
        # contended gradient atomics), ragged last tile (smoke: the 333-query case below does that)
        if not s:
            liif_case("fwd H256 many tiles", 1, 64, 96, 96, 150_001, [256] * 4, **k)
            liif_case("fwd+bwd H256 many tiles", 2, 64, 48, 48, 20_011, [256] * 4, grad=True, **k)
        # flags: no unfold / ensemble / cell; one hidden layer; 333 queries = many tiles on the 4
        # programs of the interpreter's grid
        liif_case("fwd+bwd no flags", 2, 5, 7, 5, 333, [32, 32, 32], flags=(False, False, False), grad=True, **k)
        liif_case("fwd+bwd L0 H16", 2, 3, 4, 5, 97, [16], grad=True, **k)
        if not s:  # reduced precision: same decoder, forward and gradients (the interpreter runs fp32 only)
            for p in ("tf32", "bf16", "fp16"):
                liif_case(f"fwd+bwd H256 {p}", 2, 64, 24, 20, 4096, [256] * 4, precision=p, grad=True, **k)
    _each_backend("liif_query", "liif", checks)


def dconv_case(name, n, c, h, w, k, s, mode="shared", dtype=torch.float32, backend="triton", phase="dconv"):
    torch.manual_seed(0)
    taps = k * k * s * s * (c if mode == "per_channel" else 1)
    img = torch.randn(n, c, h, w, device=DEV, dtype=dtype, requires_grad=True)
    ker = (torch.rand(n, taps, h, w, device=DEV, dtype=dtype) / (k * k)).requires_grad_()
    g = torch.randn(n, c, h * s, w * s, device=DEV, dtype=dtype)

    def run():
        out = dynamic_conv(img, ker, kernel_size=k, scale=s, mode=mode, backend=backend)
        return [out.detach()] + list(torch.autograd.grad(out, (img, ker), g))
    t = time.time()
    got = run()
    sync()
    t_first = time.time() - t
    again = run()
    i64, k64 = img.detach().double().requires_grad_(), ker.detach().double().requires_grad_()
    ref = dynamic_conv_reference(i64, k64, k, s, mode)
    want = [ref] + list(torch.autograd.grad(ref, (i64, k64), g.double()))
    errs = dict(err_out=rel(got[0], want[0]), err_dimg=rel(got[1], want[1]), err_dker=rel(got[2], want[2]))
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    row = dict(phase=phase, case=name, backend=backend, mode=mode, dtype=str(dtype), first_call_s=round(t_first, 1),
               **errs, finite=all(bool(torch.isfinite(x).all()) for x in got),
               run_to_run_max_abs=max((a - b).abs().max().item() for a, b in zip(got, again)))
    row["ok"] = bool(row["finite"] and max(errs.values()) < tol)
    log(**row)


def phase_dconv():
    s = SMOKE

    def checks(backend):
        b = dict(backend=backend)
        # smoke: one case per code path (the interpreter runs a program at a time: minutes otherwise)
        if s:
            dconv_case("train x4 (tiny)", 1, 3, 3, 4, 5, 4, **b)
            dconv_case("C4 k3 s2 per_channel (tiny)", 1, 4, 3, 4, 3, 2, "per_channel", **b)
        else:
            dconv_case("train x4", 16, 3, 64, 64, 5, 4, **b)
            dconv_case("C100 k9 s2 per_channel", 2, 100, 37, 70, 9, 2, "per_channel", **b)
            dconv_case("train x2", 16, 3, 64, 64, 5, 2, **b)
            dconv_case("infer 339x510 x4", 1, 3, 339, 510, 5, 4, **b)
            dconv_case("feat C64 x1", 4, 64, 64, 64, 5, 1, **b)
            dconv_case("C100 k9 s2 shared", 2, 100, 37, 70, 9, 2, **b)
            dconv_case("bf16 k5 s4", 2, 16, 33, 40, 5, 4, "shared", torch.bfloat16, **b)
    _each_backend("dynamic_conv", "dconv", checks)


SPEED_ORDER = ["liif_div2k_x4", "liif_4k_x4", "liif_train", "dconv_fwd", "dconv_fwdbwd", "step_liif", "liif_div2k_*",
               "dconv_*", "step_udvd", "liif_infer_*"]


def phase_speed():
    """The benchmark engine (fastliif bench) at its sizes, every row logged as it is produced."""
    from fastliif import bench
    # the cases the targets rest on first: a run cut short by its cap has measured those
    cases = ["liif_train", "dconv_fwdbwd"] if SMOKE else bench.select(SPEED_ORDER)
    result, paths, _ = bench.run(os.path.join(OUT, "bench"), devices=[DEV.type], cases=cases,
                                 size="tiny" if SMOKE else "full", rounds=2 if SMOKE else 3, chart=False,
                                 log=lambda m: print(m, flush=True),
                                 on_row=lambda r: log(phase="speed", **{k: v for k, v in r.items() if k != "times_ms"}))
    log(phase="speed", peaks=result["peaks"], files=paths, failed=len(result["errors"]))


def _require_no_caching():
    """compute-sanitizer sees out-of-bounds accesses inside the caching allocator's blocks only
    when PyTorch allocates every tensor separately (defect 9)."""
    value = os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING")
    log(phase="sanitize", PYTORCH_NO_CUDA_MEMORY_CACHING=value, ok=DEV.type != "cuda" or value == "1")


def phase_sanitize_liif():
    """Small, all flag combinations, ragged last tile, outside coords: run under compute-sanitizer."""
    _require_no_caching()
    runs = [((True, True, True), "ieee")]
    if not SMOKE:  # (smoke: the liif phase ran the same code; one case checks this phase runs)
        runs += [((False, False, False), "ieee"), ((True, False, True), "ieee"), ((True, True, True), "bf16"),
                 ((True, True, True), "tf32")]

    def checks(backend):
        for flags, p in runs:  # (smoke: fewer queries; the interpreter takes ~1 s per 10 with ensemble)
            liif_case(f"sanitize {flags} {p}", 1 if SMOKE else 2, 5, 7, 5, 100 if SMOKE else 333, [32, 32, 32],
                      flags=flags, precision=p, grad=True, backend=backend, phase="sanitize_liif")
    _each_backend("liif_query", "sanitize_liif", checks)


def phase_sanitize_dconv():
    _require_no_caching()

    def checks(backend):
        b = dict(backend=backend, phase="sanitize_dconv")
        dconv_case("sanitize 3x2 k5 s3 shared ragged", 1, 3, 3, 2, 5, 3, **b)
        if not SMOKE:
            dconv_case("sanitize 1x1 k9", 2, 3, 1, 1, 9, 2, **b)  # (smoke: one case checks this phase runs)
            dconv_case("sanitize k5 s3 shared ragged", 2, 3, 5, 7, 5, 3, **b)
            dconv_case("sanitize k3 s4 per_channel", 1, 70, 3, 6, 3, 4, "per_channel", **b)
            dconv_case("sanitize k5 s1 odd", 1, 4, 9, 3, 5, 1, **b)
    _each_backend("dynamic_conv", "sanitize_dconv", checks)


def phase_sanitize_cuda():
    """The CUDA backend alone, small cases of both ops (racecheck: its shared-memory tiles)."""
    if not (availability("liif_query")["cuda"][0] or availability("dynamic_conv")["cuda"][0]):
        return log(phase="sanitize_cuda", available=False, reason=availability("liif_query")["cuda"][1])
    _require_no_caching()
    if availability("liif_query")["cuda"][0]:
        liif_case("racecheck (T,T,T) ieee", 2, 5, 7, 5, 333, [32, 32, 32], grad=True, backend="cuda",
                  phase="sanitize_cuda")
        if not SMOKE:
            liif_case("racecheck (T,T,T) bf16", 2, 5, 7, 5, 333, [32, 32, 32], precision="bf16", grad=True,
                      backend="cuda", phase="sanitize_cuda")
    if availability("dynamic_conv")["cuda"][0]:
        dconv_case("racecheck k5 s3", 2, 3, 5, 7, 5, 3, backend="cuda", phase="sanitize_cuda")
        dconv_case("racecheck k3 s4 per_channel", 1, 10, 3, 6, 3, 4, "per_channel", backend="cuda",
                   phase="sanitize_cuda")


# kernel -> (engine case at full size, implementation) whose one call exercises it
TUNE_WORK = {
    "liif_query._liif_fwd_kernel": ("liif_div2k_x4", "triton"),
    "liif_query._liif_bwd_kernel": ("liif_train", "triton"),
    "dynamic_conv._dc_fwd_kernel": ("dconv_fwd", "triton"),
    "dynamic_conv._dc_dkernel_kernel": ("dconv_fwdbwd", "triton"),
    "dynamic_conv._dc_dimage_kernel": ("dconv_fwdbwd", "triton"),
}


def phase_tune():
    """Every configuration of every Triton kernel timed at real sizes, then what autotune picks."""
    if SMOKE:
        return log(phase="tune", skipped="GPU only (the interpreter has one configuration per kernel)")
    from fastliif import bench
    tuners = autotuners()
    single_config()
    for kname, tuner in tuners.items():
        case, impl = TUNE_WORK.get(kname, (None, None))
        if case is None:
            log(phase="tune", kernel=kname, skipped="no benchmark case mapped to this kernel")
            continue
        inst = bench.CASES[case].build(DEV)
        fn = inst.fn(impl)
        for cfg in _ORIGINAL[tuner]:
            set_config(tuner, cfg)
            try:
                log(phase="tune", kernel=kname, case=case, config=str(cfg), ms=timed(fn, 3))
            except Exception as exc:
                log(phase="tune", kernel=kname, case=case, config=str(cfg), error=f"{type(exc).__name__}: {exc}")
        set_config(tuner, _ORIGINAL[tuner][len(_ORIGINAL[tuner]) // 2])
        # the autotuner's own choice at this size, with all its configurations
        tuner.configs, tuner.cache = list(_ORIGINAL[tuner]), {}
        t = time.time()
        fn()
        sync()
        log(phase="tune", kernel=kname, case=case, autotune_s=round(time.time() - t, 1),
            picked=str(getattr(tuner, "best_config", None)))
        set_config(tuner, _ORIGINAL[tuner][len(_ORIGINAL[tuner]) // 2])
        del inst, fn
        if DEV.type == "cuda":
            torch.cuda.empty_cache()


def phase_summary():
    """One line per step and check that failed; counts of the rest (read back from triage.jsonl)."""
    path = os.path.join(OUT, JSONL)
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                rows.append({"phase": "?", "error": f"unreadable line: {line[:200]}"})
    steps = [r for r in rows if "step" in r]
    checks = [r for r in rows if "ok" in r and "step" not in r]
    bad = [r for r in checks if not r["ok"]] + [r for r in rows if "error" in r and "ok" not in r]
    missed = [(r["case"], r["impl"], r["precision"], t) for r in rows if r.get("phase") == "speed"
              for t in r.get("targets", ()) if t["met"] is False]
    met = sum(1 for r in rows if r.get("phase") == "speed" for t in r.get("targets", ()) if t["met"])
    absent = sorted({(r["phase"], r["backend"]) for r in rows if r.get("available") is False})
    print("== summary")
    for s in steps:
        extra = f" sanitizer errors {s['sanitizer_errors']}" if s.get("sanitizer_errors") not in (None, "") else ""
        print(f"  step {s['step']:14s} {s['status']:8s} rc={s['rc']} {s['seconds']}s{extra}")
    status = {}
    for s in steps:
        status[s["status"]] = status.get(s["status"], 0) + 1
    print("  steps: " + ", ".join(f"{n} {k}" for k, n in sorted(status.items())))
    print(f"  checks: {len(checks) - len([r for r in checks if not r['ok']])} ok, "
          f"{len([r for r in checks if not r['ok']])} failed; targets: {met} met, {len(missed)} missed")
    for r in bad:
        print("  FAILED", json.dumps({k: v for k, v in r.items() if k != "tb"}, default=str)[:400])
    for m in missed:
        print("  target missed:", m[0], m[1], m[2], m[3]["target"], m[3]["value"])
    for phase, backend in absent:
        print(f"  not available: backend {backend} ({phase})")
    log(phase="summary", steps=status, checks=len(checks), failed=len(bad), targets_met=met,
        targets_missed=len(missed), not_available=[f"{p}:{b}" for p, b in absent])


PHASES = ["env", "liif", "dconv", "speed", "sanitize_liif", "sanitize_dconv", "sanitize_cuda", "tune", "summary"]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=PHASES)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    OUT = a.out
    os.makedirs(OUT, exist_ok=True)
    if a.phase not in ("tune", "summary", "env"):
        single_config()
    try:
        globals()["phase_" + a.phase]()
    except Exception as exc:  # one phase failing must not hide the others: log and exit non-zero
        log(phase=a.phase, error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc()[-3000:])
        sys.exit(1)
