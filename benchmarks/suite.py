"""What the pytest-benchmark suites share: they parametrize over fastliif.bench.CASES (the cases
`fastliif bench` and the GPU triage run) and time each implementation with pytest-benchmark.

The device is CUDA when present, else the CPU; the sizes are the engine's full sizes for that
device. Before timing, each fused implementation is checked once against the reference
(fastliif.bench.rel_err < 1e-5, fp32). Cases whose reference is slow on a CPU carry the `slow`
mark (-m "not slow" skips them). FASTLIIF_BENCH_CASES="dconv_*,liif_train" picks other cases
than the device's default set (the names of `fastliif bench --list`).
"""
import os

import pytest
import torch

from fastliif.bench import CASES, default_cases, implementations, rel_err, select

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOL = 1e-5
_built = {}


def params(kinds):
    """pytest.param(case name, impl) for every case of these kinds that this device runs by default."""
    chosen = os.environ.get("FASTLIIF_BENCH_CASES")
    names = select(chosen.split(",")) if chosen else default_cases(DEVICE)
    out = []
    for name in names:
        case = CASES[name]
        if case.kind in kinds:
            marks = [pytest.mark.slow] if case.cpu_rounds else []
            out += [pytest.param(name, impl, id=f"{name}-{impl}", marks=marks)
                    for impl in implementations(case, DEVICE)]
    return out


def instance(name):
    # built once per session: the inputs, and the reference result check() compares with
    if name not in _built:
        _built[name] = [CASES[name].build(DEVICE), None]
    return _built[name]


def run(benchmark, name, impl, rounds=5, warmup_rounds=1):
    entry = instance(name)
    inst = entry[0]
    fn = inst.fn(impl)
    if CASES[name].kind != "train_step":  # whole steps change the weights: nothing to compare
        if entry[1] is None:
            entry[1] = inst.fn("reference")()
        err = rel_err(fn(), entry[1])
        assert err < TOL, f"{name}/{impl}: rel err {err:.2e} >= {TOL:.0e}"
    if CASES[name].cpu_rounds and DEVICE.type == "cpu":
        rounds, warmup_rounds = min(rounds, CASES[name].cpu_rounds), 0

    def timed():
        out = fn()
        if DEVICE.type == "cuda":  # time the GPU work, not the launch
            torch.cuda.synchronize()
        return out
    benchmark.group = name
    benchmark.extra_info["case"] = CASES[name].describe(DEVICE)
    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
