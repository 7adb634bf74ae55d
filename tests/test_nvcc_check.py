"""The CUDA kernels compile without a GPU: scripts/nvcc_check.sh (sm_80 + sm_90a, warnings are
errors, registers/spills/shared memory per kernel, plus a syntax check of the torch glue).

Runs wherever nvcc exists (the development and CI machines), skips saying so elsewhere.
About 20 s of CPU time (measured on the 2-core development machine; wall time depends on load).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, /usr/local/cuda/bin): CUDA kernels not compiled")
def test_cuda_kernels_compile_for_sm80_and_sm90a():
    env = dict(os.environ, NVCC=NVCC)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "nvcc_check.sh")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    sys.stdout.write(run.stdout)  # the register/spill/smem table, for `pytest -s`
    assert run.returncode == 0, run.stdout + run.stderr
    kernels = ("liif_forward_kernel", "liif_backward_kernel", "sum_slices_kernel", "dc_forward_kernel<float>",
               "dc_grad_kernel_kernel<float>", "dc_grad_image_kernel<float>")
    for sm in ("sm_80", "sm_90a"):
        for name in kernels:
            assert any(sm in line and name in line and "regs" in line for line in run.stdout.splitlines()), (sm, name)
    assert run.stdout.count("ok ") >= 4, run.stdout


def test_nvcc_check_fails_on_a_warning(tmp_path):
    """A kernel file with a warning must fail the check (not just print it)."""
    if NVCC is None:
        pytest.skip("nvcc not found (PATH, /usr/local/cuda/bin)")
    bad = tmp_path / "bad.cu"
    bad.write_text("__global__ void k(float* p) { unsigned u = -1; p[0] = u; }  // sign-change warning\n")
    env = dict(os.environ, NVCC=NVCC, NVCC_CHECK_FILES=str(bad))
    run = subprocess.run(["bash", str(ROOT / "scripts" / "nvcc_check.sh")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "FAIL" in run.stdout, run.stdout + run.stderr
