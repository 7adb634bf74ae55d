"""pytest-benchmark suite: UDVD's PixelConv (reference) vs fastliif.ops.dynamic_conv, forward and
forward+backward, over fastliif.bench.CASES (one group per case).

    pytest benchmarks/bench_dynamic_conv.py --benchmark-only -c benchmarks/pytest.ini
"""
import pytest

import suite


@pytest.mark.parametrize("name,impl", suite.params(("dconv_fwd", "dconv_fwdbwd")))
def test_dynamic_conv(benchmark, name, impl):
    suite.run(benchmark, name, impl)
