"""Compile the LIIF Triton kernels for a GPU architecture without a GPU (ptxas ships with Triton).

    python scripts/compile_triton.py [--arch 90] [--all]

Prints, per (kernel, tile, warps, precision), the registers, spill stack and shared memory of
the cubin, then the largest spill per kernel: catches compile errors (types, shapes, tl.dot sizes)
and register spills on a CPU-only machine. Without --all it compiles one configuration per kernel
and precision. The column chunks (BN, BK) are the launchers' own (kernels.liif_query._chunks).
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

os.environ.pop("TRITON_INTERPRET", None)  # compile for real, not for the interpreter

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALARS = ("N", "L", "OUT_DIM", "SCRATCH_STRIDE", "NQ")


def load_kernels():
    sys.path.insert(0, ROOT)  # the kernels/ package of this tree, not an installed fastliif
    return importlib.import_module("kernels.liif_query")


def resources(cubin):
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    fields = dict(tok.split(":", 1) for line in out.splitlines() if "REG:" in line for tok in line.split() if ":" in tok)
    return {k: int(fields[k]) for k in ("REG", "STACK") if k in fields}


def compile_one(jit_fn, arch, bq, warps, dot, chunks, hidden=256, corners=4, cell=True, wide=()):
    """``wide``: scalars typed int64, as Triton types a Python int >= 2^31 (N past 2^31 queries)."""
    names = jit_fn.arg_names
    bn, bk = chunks
    constexprs = dict(H=hidden, NC=corners, CELL=cell, NREL=4 if cell else 2, BN=bn, BK=bk,
                      OUT_PAD=16, DOT=dot, BQ=bq)
    signature = {n: "constexpr" if n in constexprs else "i64" if n in wide else "i32" if n in SCALARS
                 else "*i64" if n == "ROWS" else "*fp32" for n in names}
    src = ASTSource(fn=jit_fn, signature=signature,
                    constexprs={(names.index(k),): v for k, v in constexprs.items()})
    t0 = time.time()
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    info = resources(compiled.asm["cubin"])
    info.update(shared=compiled.metadata.shared, seconds=time.time() - t0)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--all", action="store_true", help="every autotune configuration")
    args = parser.parse_args(argv)
    kernels = load_kernels()
    configs = [(16, 4), (32, 4), (32, 8), (64, 8)] if args.all else [(32, 4)]
    failures = 0
    summary = []
    for name in ("_liif_fwd_kernel", "_liif_bwd_kernel"):
        jit_fn = getattr(kernels, name).fn  # the autotuner wraps the JITFunction
        chunks = kernels._chunks(256, backward=name == "_liif_bwd_kernel")
        spills = []
        for bq, warps in configs:
            for dot in ("ieee", "tf32", "bf16"):
                try:
                    r = compile_one(jit_fn, args.arch, bq, warps, dot, chunks)
                    spills.append(r.get("STACK", 0))
                    print(f"{name:18s} BQ={bq:<3d} warps={warps} {dot:5s} regs {r.get('REG')} "
                          f"spill {r.get('STACK')} B shared {r['shared']} B ({r['seconds']:.0f} s)")
                except Exception as exc:  # report every failing configuration
                    failures += 1
                    print(f"{name:18s} BQ={bq:<3d} warps={warps} {dot:5s} FAILED: {str(exc)[-400:]}")
        try:  # more than 2^31 queries: N (and the scratch stride) arrive as int64
            r = compile_one(jit_fn, args.arch, 32, 4, "ieee", chunks, wide=("N", "SCRATCH_STRIDE"))
            print(f"{name:18s} BQ=32  warps=4 ieee  N:int64 regs {r.get('REG')} spill {r.get('STACK')} B")
        except Exception as exc:
            failures += 1
            print(f"{name:18s} BQ=32  warps=4 ieee  N:int64 FAILED: {str(exc)[-400:]}")
        if spills:
            summary.append(f"spills {name}: max {max(spills)} B, {sum(x > 0 for x in spills)} of {len(spills)} "
                           f"configurations spill (BN, BK = {chunks}, triton {triton.__version__}, sm_{args.arch})")
    print("\n".join(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
