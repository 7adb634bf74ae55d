"""scripts/gpu_triage.sh: its smoke mode (CPU, Triton interpreter) runs, records every step and
check in triage.jsonl, skips a step whose cap no longer fits, and goes on after a failing step.
The first test runs the whole smoke (`SMOKE=1 bash scripts/gpu_triage.sh DIR`, the README's
command; about 40 s on 2 idle cores), so CI keeps it green; the others use reduced step sets."""
import json
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_triage.sh")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script")


def triage(out, timeout=400, **env):
    pytest.importorskip("triton")
    full = dict(os.environ, SMOKE="1", PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **env)
    proc = subprocess.run(["bash", SCRIPT, str(out)], capture_output=True, text=True, env=full, timeout=timeout)
    rows = [json.loads(line) for line in (out / "triage.jsonl").read_text().splitlines()]
    return proc, rows


def steps(rows):
    return {r["step"]: r for r in rows if "step" in r}


ALL_STEPS = {"env", "liif", "dconv", "speed", "san_liif", "san_dconv", "racecheck", "tune", "pytest_gpu"}


def test_whole_smoke_run_is_green_and_writes_jsonl_as_it_goes(tmp_path):
    proc, rows = triage(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    st = steps(rows)
    assert set(st) == ALL_STEPS
    cuda_built = (tmp_path / "cuda_backend").read_text().strip() == "1"
    assert all(r["status"] == "ok" for name, r in st.items() if name != "racecheck" or cuda_built), st
    checks = [r for r in rows if "ok" in r and r.get("phase") in ("liif", "dconv", "sanitize_liif", "sanitize_dconv")]
    assert checks and all(r["ok"] for r in checks), [r for r in checks if not r["ok"]]
    env = next(r for r in rows if r.get("phase") == "env")
    assert env["device"] == "cpu" and "liif_query._liif_fwd_kernel" in env["kernels"]
    assert set(env["liif_query"]) >= {"torch", "triton", "cuda"}
    if (tmp_path / "cuda_backend").read_text().strip() == "0":
        assert st["racecheck"]["status"] == "skipped"
    speed = [r for r in rows if r.get("phase") == "speed" and "impl" in r]
    assert {r["case"] for r in speed} == {"liif_train", "dconv_fwdbwd"}
    assert all(r["median_ms"] > 0 and r["speedup"] > 0 for r in speed)
    assert all(r["rel_err"] < 1e-5 for r in speed if r["impl"] != "reference")
    assert json.loads((tmp_path / "bench" / "bench.json").read_text())["size"] == "tiny"
    summary = rows[-1]
    assert summary["phase"] == "summary" and summary["failed"] == 0
    assert summary["steps"] == ({"ok": 9} if cuda_built else {"ok": 8, "skipped": 1})
    assert "=== env" in (tmp_path / "triage.log").read_text() and not (tmp_path / "tmp").exists()


def test_failing_step_does_not_stop_the_rest_and_caps_are_kept(tmp_path):
    fake = tmp_path / "python3"  # fails the env phase, runs everything else
    fake.write_text(f'#!/bin/sh\ncase " $* " in *" env "*) echo "env exploded" >&2; exit 3;; esac\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    proc, rows = triage(out, PYTHON=str(fake), STEPS="env liif tune", BUDGET="100")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    st = steps(rows)
    assert st["env"]["status"] == "failed" and st["env"]["rc"] == 3
    assert st["liif"]["status"] == "skipped"  # its 130 s cap does not fit a 100 s budget
    assert st["tune"]["status"] == "ok"  # ran after the failure
    assert next(r for r in rows if r.get("phase") == "tune")["skipped"].startswith("GPU only")
    assert "env exploded" in (out / "triage.log").read_text()
    assert "liif SKIPPED (cap 130s" in proc.stdout


def test_one_config_per_kernel_and_tune_map_cover_the_kernels():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import gpu_triage
    finally:
        sys.path.pop(0)
    tuners = gpu_triage.autotuners()
    assert set(gpu_triage.TUNE_WORK) == set(tuners)  # a new or renamed kernel must be mapped for tuning
    chosen = gpu_triage.single_config()
    assert set(chosen) == set(tuners) and all(len(t.configs) == 1 for t in tuners.values())
    from fastliif.bench import CASES
    assert all(case in CASES for case, _ in gpu_triage.TUNE_WORK.values())
