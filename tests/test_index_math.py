"""csrc/index_math.h, the index arithmetic shared by the CPU and CUDA kernels, against grid_sample.

A small probe (tests/native/index_math_probe.cpp) prints the header's corners (cell, rel_coord,
ensemble weight) as exact hex floats; they must match fastliif.ops._liif_torch.corner_geometry,
which asks grid_sample itself, bit for bit for cells and rel_coord (ties included), in float32
and float64. The probe is built by the host C++ compiler and, where nvcc exists, by nvcc too
(the __host__ __device__ path), and both must print the same bits.
"""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from fastliif.ops._liif_torch import corner_geometry

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "native" / "index_math_probe.cpp"
CXX = shutil.which("c++") or shutil.which("g++")
NVCC = shutil.which("nvcc")


def build(compiler, out):
    if compiler == "nvcc":  # nvcc compiles .cpp as host C++ unless told the file is CUDA
        cmd = [NVCC, "-x", "cu", "-std=c++17", "-O2", str(PROBE), "-o", str(out)]
    else:
        cmd = [CXX, "-std=c++17", "-O2", "-ffp-contract=off", str(PROBE), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return out


def queries(dtype):
    """Random coordinates, coordinates outside [-1, 1], and exact ties of the nearest rounding."""
    g = torch.Generator().manual_seed(7)
    cases = []
    for h, w in ((4, 6), (1, 1), (3, 5), (8, 8), (7, 2)):
        rand = (torch.rand(60, 2, generator=g, dtype=torch.float64) * 2.6 - 1.3).to(dtype)
        # (c + 1) * size / 2 - 0.5 = k + 0.5 exactly: c = 2 (k + 1) / size - 1
        ty = torch.tensor([2.0 * (k + 1) / h - 1 for k in range(h)], dtype=dtype)
        tx = torch.tensor([2.0 * (k + 1) / w - 1 for k in range(w)], dtype=dtype)
        ties = torch.stack(torch.meshgrid(ty, tx, indexing="ij"), -1).view(-1, 2)
        cases.append((h, w, torch.cat([rand, ties])))
    return cases


def run_probe(exe, dtype, ensemble):
    tag = "f32" if dtype == torch.float32 else "f64"
    lines = [f"{tag} {h} {w} {int(ensemble)} {float(c[0]).hex()} {float(c[1]).hex()}"
             for h, w, coords in queries(dtype) for c in coords]
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return out.split("\n")[:-1]


@pytest.fixture(scope="module")
def host_probe(tmp_path_factory):
    if CXX is None:
        pytest.skip("no host C++ compiler (c++/g++) on PATH")
    return build("c++", tmp_path_factory.mktemp("probe") / "probe_host")


@pytest.mark.parametrize("ensemble", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_header_matches_grid_sample(host_probe, dtype, ensemble):
    rows = iter(run_probe(host_probe, dtype, ensemble))
    for h, w, coords in queries(dtype):
        cells, rel, weights = corner_geometry(coords.unsqueeze(0), h, w, ensemble)
        for q in range(coords.shape[0]):
            for t in range(cells.shape[0]):
                cell, ry, rx, wt = next(rows).split()
                what = f"h={h} w={w} coord={coords[q].tolist()} corner {t}"
                assert int(cell) == cells[t, 0, q].item(), what
                assert float.fromhex(ry) == rel[t, 0, q, 0].item(), what
                assert float.fromhex(rx) == rel[t, 0, q, 1].item(), what
                # the reference sums the four areas in its own order: a rounding apart at most
                assert abs(float.fromhex(wt) - weights[t, 0, q].item()) <= 4 * torch.finfo(dtype).eps, what


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: the header's nvcc build is not compared")
def test_nvcc_host_build_prints_the_same_bits(host_probe, tmp_path):
    cuda_probe = build("nvcc", tmp_path / "probe_nvcc")
    for dtype in (torch.float32, torch.float64):
        for ensemble in (False, True):
            assert run_probe(cuda_probe, dtype, ensemble) == run_probe(host_probe, dtype, ensemble)
