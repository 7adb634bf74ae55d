"""fastliif's one benchmark engine: fused ops vs the reference, speed and memory, on this machine.

- cases.py: every case, defined once (LIIF inference at several scales and sizes, the LIIF
  query's training step, dynamic_conv forward and forward+backward, whole LIIF and UDVD
  training steps); `fastliif bench`, benchmarks/bench_*.py and scripts/gpu_triage.py use them;
- measure.py: timers (time.perf_counter on CPU, CUDA events on GPU), the peak-memory probe,
  precision modes, the machine's measured matmul peak and copy bandwidth;
- runner.py: the one runner (interleaved rounds, medians, peak memory, TFLOP/s and GB/s
  against the measured peaks, correctness against the reference);
- targets.py: the Triton issue's GPU targets, each CUDA row met / missed;
- writer.py: the one writer (markdown table, JSON, PNG chart), atomic.
"""
from .cases import CASES, Case, default_cases, select
from .measure import CpuTimer, CudaTimer, machine_peaks, measure_peak, precision_mode, status_kib, time_rounds
from .runner import cpu_model, implementations, rel_err, run, run_case
from .writer import markdown, plot, require_matplotlib

__all__ = ["CASES", "Case", "default_cases", "select", "CpuTimer", "CudaTimer", "machine_peaks", "measure_peak",
           "precision_mode", "status_kib", "time_rounds", "cpu_model", "implementations", "rel_err", "run",
           "run_case", "markdown", "plot", "require_matplotlib"]
