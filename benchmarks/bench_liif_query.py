"""pytest-benchmark suite: reference LIIF query vs the fused op (backends cpu and torch).

    pytest benchmarks/ --benchmark-only                 # everything (~5 min on 2 cores)
    pytest benchmarks/ --benchmark-only -m "not slow"   # skip the 512x512 case

Each group holds the three implementations of one case side by side. Before timing, each
fused implementation is checked once against the reference (liif_cases.Case.check).
"""
import pytest

from liif_cases import IMPLS, Case

_cases = {}


def case(name):
    # built once per session: the slow reference result used by check() is cached on it
    if name not in _cases:
        _cases[name] = Case(name)
    return _cases[name]


def run(benchmark, name, impl, rounds, warmup_rounds):
    c = case(name)
    c.check(impl)
    benchmark.extra_info["case"] = c.title
    benchmark.pedantic(c.fn(impl), rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)


@pytest.mark.benchmark(group="infer_48_to_192")
@pytest.mark.parametrize("impl", IMPLS)
def test_infer_48_to_192(benchmark, impl):
    run(benchmark, "infer_48_to_192", impl, rounds=5, warmup_rounds=1)


@pytest.mark.slow
@pytest.mark.benchmark(group="infer_128_to_512")
@pytest.mark.parametrize("impl", IMPLS)
def test_infer_128_to_512(benchmark, impl):
    run(benchmark, "infer_128_to_512", impl, rounds=3, warmup_rounds=0)


@pytest.mark.benchmark(group="train_b4_48")
@pytest.mark.parametrize("impl", IMPLS)
def test_train_b4_48(benchmark, impl):
    run(benchmark, "train_b4_48", impl, rounds=5, warmup_rounds=1)
