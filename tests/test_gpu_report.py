"""The GPU report script runs end to end (tiny shapes; on CPU through the Triton interpreter)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_report_smoke(tmp_path):
    pytest.importorskip("triton")
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_report.py"), "--smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (tmp_path / "gpu_report_smoke.md").read_text()
    assert "SMOKE RUN" in report and "| fused |" in report and "x4 24x20" in report
    # the fused result matched the reference inside the script
    err = float(report.split("| x4 24x20 | fp32 |")[1].splitlines()[0].split("|")[-2])
    assert err < 1e-5
