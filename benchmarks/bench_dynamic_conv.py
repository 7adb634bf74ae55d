"""pytest-benchmark suite: UDVD's PixelConv (reference) vs fastliif.ops.dynamic_conv (backends cpu and torch).

    pytest benchmarks/bench_dynamic_conv.py --benchmark-only                 # everything (~1 min on 2 idle cores)
    pytest benchmarks/bench_dynamic_conv.py --benchmark-only -m "not slow"   # skip 339x510 forward+backward

One group per (case, pass) holds the three implementations side by side: "fwd" is one call
under no_grad, "fwdbwd" one call with image and kernel requiring grad plus out.backward(dout)
(dconv_cases.Case). Before timing, each fused implementation is checked once against the
reference (output, and both gradients for fwdbwd; relative error < 1e-5).
"""
import pytest

from dconv_cases import IMPLS, Case

_cases = {}


def case(name):
    # built once per session: the slow reference results used by check() are cached on it
    if name not in _cases:
        _cases[name] = Case(name)
    return _cases[name]


def run(benchmark, name, pass_, impl, rounds=5, warmup_rounds=1):
    c = case(name)
    c.check(impl, pass_)
    benchmark.extra_info["case"] = c.title
    benchmark.extra_info["pass"] = pass_
    benchmark.pedantic(c.fn(impl, pass_), rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)


@pytest.mark.benchmark(group="dconv_train_s2_fwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_train_s2_fwd(benchmark, impl):
    run(benchmark, "train_s2", "fwd", impl)


@pytest.mark.benchmark(group="dconv_train_s2_fwdbwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_train_s2_fwdbwd(benchmark, impl):
    run(benchmark, "train_s2", "fwdbwd", impl)


@pytest.mark.benchmark(group="dconv_train_s4_fwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_train_s4_fwd(benchmark, impl):
    run(benchmark, "train_s4", "fwd", impl)


@pytest.mark.benchmark(group="dconv_train_s4_fwdbwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_train_s4_fwdbwd(benchmark, impl):
    run(benchmark, "train_s4", "fwdbwd", impl, rounds=3)


@pytest.mark.benchmark(group="dconv_infer_339x510_s4_fwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_infer_339x510_s4_fwd(benchmark, impl):
    # the reference is ~1 s a call here (one strided bmm per pixel): 3 rounds, no warm-up
    run(benchmark, "infer_339x510_s4", "fwd", impl, rounds=3, warmup_rounds=0)


@pytest.mark.slow
@pytest.mark.benchmark(group="dconv_infer_339x510_s4_fwdbwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_infer_339x510_s4_fwdbwd(benchmark, impl):
    run(benchmark, "infer_339x510_s4", "fwdbwd", impl, rounds=3, warmup_rounds=0)


@pytest.mark.benchmark(group="dconv_feat_c64_s1_fwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_feat_c64_s1_fwd(benchmark, impl):
    run(benchmark, "feat_c64_s1", "fwd", impl)


@pytest.mark.benchmark(group="dconv_feat_c64_s1_fwdbwd")
@pytest.mark.parametrize("impl", IMPLS)
def test_feat_c64_s1_fwdbwd(benchmark, impl):
    run(benchmark, "feat_c64_s1", "fwdbwd", impl)
