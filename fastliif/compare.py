"""Side-by-side equivalence and speed of the fused LIIF query against the reference.

``fastliif compare`` (the package's main job until a bundled model exists): builds an
EDSR-baseline-sized LIIF decoder (580 -> 256 x4 -> 3) with random weights, queries a full
x``scale`` output grid from random 48x48 features and a training batch of random queries,
and prints, per implementation, the error against a float64 evaluation of the official
query_rgb and the median time. A fused backend passes when its output is within twice the
fp32 reference's own error plus 1e-6 (flash-attention's rule) and each gradient within twice
that error plus 1e-4 (a ReLU unit within rounding of zero can flip in either fp32 evaluation).
"""
import copy
import statistics
import time

import torch
from tqdm import tqdm

from .ops import availability, liif_query
from .reference import MLP, make_cell, make_coord, query_rgb_reference


def _median_time(fn, rounds):
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cases(size, scale, batch, sample_q, seed):
    g = torch.Generator().manual_seed(seed)
    H = W = round(size * scale)
    feat = torch.randn(1, 64, size, size, generator=g)
    coord = make_coord((H, W)).unsqueeze(0)
    infer = dict(feat=feat, coord=coord, cell=make_cell(coord, (H, W)))
    tcoord = torch.rand(batch, sample_q, 2, generator=g) * 2 - 1
    train = dict(feat=torch.randn(batch, 64, size, size, generator=g), coord=tcoord,
                 cell=torch.full_like(tcoord, 2 / (size * scale)))
    return [(f"inference x{scale:g} {size}x{size} -> {H}x{W}", infer, False),
            (f"fwd+bwd B={batch} sample_q={sample_q}", train, True)]


def _call(impl, case, train, mlp, dtype=torch.float32):
    """Output (and gradients of a squared loss when training) of one implementation."""
    linears = list(mlp.layers[0::2])
    weights, biases = [m.weight for m in linears], [m.bias for m in linears]
    feat = case["feat"].to(dtype).requires_grad_(train)
    coord, cell = case["coord"].to(dtype), case["cell"].to(dtype)
    with torch.set_grad_enabled(train):
        if impl == "reference":
            out = query_rgb_reference(feat, coord, cell, mlp)
        else:
            out = liif_query(feat, coord, cell, weights, biases, backend=impl)
        if not train:
            return [out.detach()]
        return [out.detach(), *torch.autograd.grad(out.square().mean(), [feat, *weights, *biases])]


def _err(results, oracle):
    """Per tensor relative L2 error against the float64 oracle."""
    return [((r.double() - o).norm() / o.norm().clamp_min(1e-300)).item() for r, o in zip(results, oracle)]


def run(size=48, scale=4.0, batch=4, sample_q=2304, rounds=3, seed=0, backends=None):
    """Prints the table; returns rows (case, impl, worst error, passed, median s, speedup)."""
    torch.manual_seed(seed)
    mlp = MLP(64 * 9 + 4, 3, [256] * 4)
    mlp64 = copy.deepcopy(mlp).double()
    cases = _cases(size, scale, batch, sample_q, seed)
    backends = backends or [b for b, (ok, _) in availability().items() if ok and b in ("cpu", "torch")]
    rows = []
    with tqdm(total=len(cases) * (2 + len(backends)), desc="compare", unit="run", leave=False) as bar:
        for name, case, train in cases:
            oracle = _call("reference", case, train, mlp64, torch.float64)
            bar.update()
            ref_err = _err(_call("reference", case, train, mlp), oracle)
            t_ref = _median_time(lambda: _call("reference", case, train, mlp), rounds)
            rows.append((name, "reference", max(ref_err), True, t_ref, 1.0))
            bar.update()
            for impl in backends:
                err = _err(_call(impl, case, train, mlp), oracle)
                # output: within 2x the reference's own error; gradients get a 1e-4 floor too,
                # since a ReLU unit within rounding of 0 may flip in either implementation
                floors = [1e-6] + [1e-4] * (len(err) - 1)
                passed = all(e <= 2 * r + f for e, r, f in zip(err, ref_err, floors))
                t = _median_time(lambda impl=impl: _call(impl, case, train, mlp), rounds)
                rows.append((name, impl, max(err), passed, t, t_ref / t))
                bar.update()
    _print(rows)
    return rows


def _print(rows):
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}; "
          "error = worst relative L2 error of output and gradients vs a float64 reference")
    print(f"| {'case':<34} | {'impl':<9} | {'error':>8} | {'<= 2x ref':>9} | {'median ms':>9} | {'speedup':>7} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 10}|{'-' * 11}|{'-' * 11}|{'-' * 9}|")
    for case, impl, err, passed, t, speed in rows:
        verdict = "-" if impl == "reference" else ("yes" if passed else "NO")
        print(f"| {case:<34} | {impl:<9} | {err:>8.1e} | {verdict:>9} | {t * 1e3:>9.1f} | {speed:>6.2f}x |")
