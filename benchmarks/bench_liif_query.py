"""pytest-benchmark suite: the reference LIIF query vs the fused op, inference and the query's
training step, over fastliif.bench.CASES (one group per case, the implementations side by side).

    pytest benchmarks/bench_liif_query.py --benchmark-only -c benchmarks/pytest.ini [-m "not slow"]
"""
import pytest

import suite


@pytest.mark.parametrize("name,impl", suite.params(("liif_infer", "liif_train")))
def test_liif_query(benchmark, name, impl):
    suite.run(benchmark, name, impl)
