"""pytest-benchmark suite: whole training steps (forward, loss, backward, Adam) of the fused model
vs its -reference twin, over fastliif.bench.CASES (one group per case; steps/s = 1 / median).

    pytest benchmarks/bench_train.py --benchmark-only -c benchmarks/pytest.ini
"""
import pytest

import suite


@pytest.mark.parametrize("name,impl", suite.params(("train_step",)))
def test_train_step(benchmark, name, impl):
    suite.run(benchmark, name, impl)
