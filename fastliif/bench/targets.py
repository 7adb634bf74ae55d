"""The Triton issue's targets (on an H100/H200), checked on every CUDA row they apply to, so the
GPU table says for each row whether its target is met or missed:

- inference >= 4x the official batched_predict at every precision;
- tf32 fused >= 12x the fp32 reference;
- bf16 MLP throughput >= 40% of the measured dense bf16 peak;
- a 4K x4 output in one call with < 2 GB extra memory;
- training step >= 2x faster with >= 5x less activation memory;
- dynamic_conv >= 5x the seed's PixelConv and >= 60% of the measured copy bandwidth.

They are GPU targets: CPU rows carry none. They apply to the GPU kernels' backends (triton, cuda),
not to the portable torch backend.
"""
import dataclasses
from typing import Callable, Optional

GPU_IMPLS = ("triton", "cuda")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    need: float
    unit: str  # how value and need print: "x" (ratio), "%" (fraction), "GB"
    value: Callable  # (row, rows of the same device and case) -> number or None
    precision: Optional[str] = None  # only rows of this precision
    above: bool = True  # met when value >= need (else value < need)

    def check(self, row, same_case):
        if row["device"] != "cuda" or row["impl"] not in GPU_IMPLS:
            return None
        if self.precision and row["precision"] != self.precision:
            return None
        v = self.value(row, same_case)
        if v is None:
            return {"target": self.name, "value": None, "need": self.need, "met": None}
        met = v >= self.need if self.above else v < self.need
        return {"target": self.name, "value": v, "need": self.need, "met": bool(met)}


def fmt(result):
    """'speedup >= 4x: met (5.1x)'"""
    unit = {"x": "x", "%": "%", "GB": " GB"}[_UNITS[result["target"]]]
    scale = 100 if unit == "%" else 1

    def num(v):
        return f"{v * scale:.3g}{unit}"
    verdict = "n/a" if result["met"] is None else ("met" if result["met"] else "MISSED")
    shown = "" if result["value"] is None else f" ({num(result['value'])})"
    return f"{result['target']}: {verdict}{shown}"


def _ref_fp32_over(row, same):
    ref = [r for r in same if r["impl"] == "reference" and r["precision"] == "fp32"]
    return ref[0]["median_ms"] / row["median_ms"] if ref else None


SPEEDUP_4X = Target("speedup >= 4x", 4.0, "x", lambda r, s: r["speedup"])
TF32_12X = Target("tf32 >= 12x fp32 reference", 12.0, "x", _ref_fp32_over, precision="tf32")
BF16_PEAK_40 = Target("bf16 >= 40% of matmul peak", 0.40, "%", lambda r, s: r.get("peak_fraction"),
                      precision="bf16")
MEMORY_2GB = Target("extra memory < 2 GB", 2.0, "GB", lambda r, s: r["peak_mib"] * 2**20 / 1e9, above=False)
TRAIN_2X = Target("speedup >= 2x", 2.0, "x", lambda r, s: r["speedup"])
TRAIN_MEMORY_5X = Target("memory >= 5x less", 5.0, "x", lambda r, s: r["memory_ratio"])
DCONV_5X = Target("speedup >= 5x", 5.0, "x", lambda r, s: r["speedup"])
DCONV_COPY_60 = Target(">= 60% of copy bandwidth", 0.60, "%", lambda r, s: r.get("bandwidth_fraction"))

_UNITS = {t.name: t.unit for t in (SPEEDUP_4X, TF32_12X, BF16_PEAK_40, MEMORY_2GB, TRAIN_2X, TRAIN_MEMORY_5X,
                                   DCONV_5X, DCONV_COPY_60)}


def evaluate(case, rows):
    """Adds row["targets"] (a list of results, possibly empty) to each row of one case and device."""
    for row in rows:
        row["targets"] = [res for t in case.targets if (res := t.check(row, rows)) is not None]
