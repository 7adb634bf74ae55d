"""pytest-benchmark suite: training throughput, fused model vs the reference model (one group
per case, the two side by side; steps per second = 1 / median).

    pytest benchmarks/bench_train.py --benchmark-only     (~2 min on 2 idle cores)
"""
import pytest

from train_cases import BACKENDS, TrainCase

_cases = {}


def case(name):
    if name not in _cases:
        _cases[name] = TrainCase(name)
    return _cases[name]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["liif_edsr_b4", "udvd_b4"])
def test_train_step(benchmark, name, backend):
    c = case(name)
    benchmark.group = f"train_{name}"
    benchmark.extra_info["case"] = c.title
    step = c.step_fn(backend)
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
