"""Side-by-side equivalence and speed of the fused LIIF query against the reference.

``fastliif compare`` (the package's main job until a bundled model exists): builds an
EDSR-baseline-sized LIIF decoder (580 -> 256 x4 -> 3) with random weights, queries a full
x``scale`` output grid from random 48x48 features and a training batch of random queries,
and prints, per backend, the error against the official query_rgb and the median time.
"""
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
    mlp = MLP(64 * 9 + 4, 3, [256] * 4)
    weights = [layer.weight for layer in mlp.layers[0::2]]
    biases = [layer.bias for layer in mlp.layers[0::2]]
    H = W = round(size * scale)
    feat = torch.randn(1, 64, size, size, generator=g)
    coord = make_coord((H, W)).unsqueeze(0)
    infer = dict(feat=feat, coord=coord, cell=make_cell(coord, (H, W)))
    tcoord = torch.rand(batch, sample_q, 2, generator=g) * 2 - 1
    train = dict(feat=torch.randn(batch, 64, size, size, generator=g), coord=tcoord,
                 cell=torch.full_like(tcoord, 2 / (size * scale)))
    return mlp, weights, biases, [(f"inference x{scale:g} {size}x{size} -> {H}x{W}", infer, False),
                                  (f"fwd+bwd B={batch} sample_q={sample_q}", train, True)]


def run(size=48, scale=4.0, batch=4, sample_q=2304, rounds=3, seed=0, backends=None):
    """Returns rows of (case, impl, max_rel_err, median_s, speedup) and prints the table."""
    torch.manual_seed(seed)
    mlp, weights, biases, cases = _cases(size, scale, batch, sample_q, seed)
    avail = [b for b, (ok, _) in availability().items() if ok and b in ("cpu", "torch")]
    backends = backends or avail
    rows = []
    steps = len(cases) * (1 + len(backends))
    with tqdm(total=steps, desc="compare", unit="run", leave=False) as bar:
        for name, case, train in cases:
            def call(impl, case=case, train=train):
                feat = case["feat"].clone().requires_grad_(train)
                with torch.set_grad_enabled(train):
                    if impl == "reference":
                        out = query_rgb_reference(feat, case["coord"], case["cell"], mlp)
                    else:
                        out = liif_query(feat, case["coord"], case["cell"], weights, biases, backend=impl)
                    if not train:
                        return out, ()
                    params = [feat, *weights, *biases]
                    return out, torch.autograd.grad(out.square().mean(), params)

            ref_out, ref_grads = call("reference")
            t_ref = _median_time(lambda: call("reference"), rounds)
            rows.append((name, "reference", 0.0, t_ref, 1.0))
            bar.update()
            for impl in backends:
                out, grads_ = call(impl)
                # relative L2 error: robust to the odd ReLU unit that sits at 0 and flips
                errs = [((a - b).norm() / b.norm()).item() for a, b in zip((out, *grads_), (ref_out, *ref_grads))]
                t = _median_time(lambda impl=impl: call(impl), rounds)
                rows.append((name, impl, max(errs), t, t_ref / t))
                bar.update()
    _print(rows)
    return rows


def _print(rows):
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"| {'case':<38} | {'impl':<9} | {'rel L2 err':>11} | {'median ms':>9} | {'speedup':>7} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 13}|{'-' * 11}|{'-' * 9}|")
    for case, impl, err, t, speed in rows:
        print(f"| {case:<38} | {impl:<9} | {err:>11.2e} | {t * 1e3:>9.1f} | {speed:>6.2f}x |")
