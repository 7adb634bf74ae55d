"""How the engine measures: timers (CPU perf_counter, CUDA events), the peak-memory probe,
precision modes, and the machine's own ceilings (dense matmul TFLOP/s, copy GB/s).

Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` over the call minus the allocated
bytes before it. CPU (Linux): the process's resident high-water mark (VmHWM, reset through
/proc/self/clear_refs) minus the resident size before the call, after ``malloc_trim(0)`` has
returned freed heap pages to the system (else a call could reuse pages an earlier call left
behind and look free); this counts every allocation, the C++ kernels' own included.
Elsewhere: the CPU allocations the torch profiler records.
"""
import contextlib
import ctypes
import gc
import statistics
import time

import torch


# ----------------------------------------------------------------------------------------- timers

class CpuTimer:
    """(result, milliseconds) of one call, by time.perf_counter."""

    clock = staticmethod(time.perf_counter)

    def __call__(self, fn):
        t0 = self.clock()
        result = fn()
        return result, 1e3 * (self.clock() - t0)


class CudaTimer:
    """(result, milliseconds) of one call, by CUDA events around it (GPU time, not launch time)."""

    def __init__(self, device):
        self.device = torch.device(device)

    def __call__(self, fn):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(self.device)
        start.record()
        result = fn()
        end.record()
        torch.cuda.synchronize(self.device)
        return result, start.elapsed_time(end)


def timer_for(device):
    return CudaTimer(device) if torch.device(device).type == "cuda" else CpuTimer()


def time_rounds(fns, rounds, timer):
    """{impl: [ms, ...]}: ``rounds`` rounds, each calling every implementation once in turn
    (ref, a, b, ref, a, b, ...), so that load from other processes hits all of them alike."""
    times = {impl: [] for impl in fns}
    for _ in range(rounds):
        for impl, fn in fns.items():
            result, ms = timer(fn)
            times[impl].append(ms)
            del result
    return times


def summary(times):
    """median / min / max of a list of milliseconds."""
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


# -------------------------------------------------------------------------------------- precision

@contextlib.contextmanager
def precision_mode(name, device):
    """fp32 (IEEE everywhere, cuDNN included), tf32 (matmuls and cuDNN convolutions in TF32) or
    bf16 (autocast) for a block. The fused query follows the same settings (dot_precision)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    tf32 = name == "tf32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=name == "bf16"):
            yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


PRECISIONS = ("fp32", "tf32", "bf16")


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


def memory_method(device):
    if torch.device(device).type == "cuda":
        return "cuda allocator"
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
    method = method or memory_method(device)
    if method == "cuda allocator":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, torch.cuda.max_memory_allocated(device) - base
    if method == "rss":
        return _rss_peak(fn)
    return _profiler_peak(fn)


# ------------------------------------------------------------------------------ machine ceilings

# (matmul side, copy bytes) per size: big enough to leave caches and launch overheads behind
PEAK_SIZES = {"cuda": {"full": (8192, 2**30), "quick": (4096, 2**28), "tiny": (256, 2**20)},
              "cpu": {"full": (2048, 2**28), "quick": (1024, 2**26), "tiny": (128, 2**20)}}


def machine_peaks(device, size="full", timer=None, rounds=5):
    """Measured ceilings of this device: dense matmul TFLOP/s per precision (fp32, and on CUDA
    tf32 and bf16 too; random operands) and copy bandwidth in GB/s (y.copy_(x): bytes read +
    bytes written over the time). Medians of ``rounds`` after one warm-up."""
    device = torch.device(device)
    timer = timer or timer_for(device)
    n, nbytes = PEAK_SIZES[device.type][size]
    g = torch.Generator().manual_seed(0)
    peaks = {"matmul_tflops": {}}
    for prec in ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32",):
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        a = torch.randn(n, n, generator=g).to(device, dtype)
        b = torch.randn(n, n, generator=g).to(device, dtype)
        with precision_mode("tf32" if prec == "tf32" else "fp32", device):
            timer(lambda: a @ b)
            ms = statistics.median(timer(lambda: a @ b)[1] for _ in range(rounds))
        peaks["matmul_tflops"][prec] = 2 * n ** 3 / (ms * 1e-3) / 1e12
        del a, b
    x = torch.rand(nbytes // 4, generator=g).to(device)
    y = torch.empty_like(x)
    timer(lambda: y.copy_(x))
    ms = statistics.median(timer(lambda: y.copy_(x))[1] for _ in range(rounds))
    peaks["copy_gbs"] = 2 * nbytes / (ms * 1e-3) / 1e9
    peaks["matmul_n"], peaks["copy_bytes"] = n, nbytes
    return peaks
