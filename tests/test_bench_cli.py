"""`fastliif bench --quick`: the table, the PNG chart and the JSON of raw numbers."""
import json
import math

import pytest
import torch
from PIL import Image

from fastliif.bench import CASES, Case, measure_peak, rel_err
from fastliif.cli import main


def test_quick_run_writes_table_png_and_json(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["bench", "--quick", "--threads", "1", "--rounds", "2", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| cpu |")]
    impls = {line.split("|")[3].strip() for line in rows}
    assert "reference" in impls and "torch" in impls
    assert len(rows) == len(CASES) * len(impls)
    png = Image.open(tmp_path / "bench.png")
    assert png.format == "PNG" and png.width > 500 and png.height > 300
    md = (tmp_path / "bench.md").read_text().splitlines()
    assert [line for line in md if line.startswith("| cpu |")] == rows
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["quick"] is True and data["rounds"] == 2
    results = data["results"]
    assert {r["case"] for r in results} == set(CASES)
    for r in results:
        assert len(r["times_ms"]) == 2 and all(t > 0 for t in r["times_ms"])
        for key in ("speedup", "memory_ratio", "median_ms"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["case"], r["impl"], key)
        assert r["peak_mib"] >= 0
        if r["impl"] != "reference":  # the fused result of the measured call matched the reference
            assert r["rel_err"] < 1e-5, (r["case"], r["impl"], r["rel_err"])
    # the reference unfolds every query's 3x3 neighbourhood: the fused cpu kernel must need far less
    by = {(r["case"], r["impl"]): r for r in results}
    if ("liif_infer_large", "cpu") in by:
        assert by[("liif_infer_large", "cpu")]["memory_ratio"] > 3


def test_peak_memory_sees_a_large_allocation():
    _, peak = measure_peak(lambda: torch.ones(64, 2**20).sum(), "cpu")  # 256 MiB, touched
    assert 200 * 2**20 < peak < 400 * 2**20


def test_case_results_agree_across_backends():
    case = Case("dconv_fwdbwd", {"n": 2, "h": 6}, "cpu")
    ref = case.fn("reference")()
    got = case.fn("torch")()
    assert len(ref) == 3 and rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("flag", ["--threads", "--rounds"])
def test_bad_counts_rejected(tmp_path, capsys, flag):
    assert main(["bench", "--quick", flag, "0", "--out", str(tmp_path)]) == 2
    assert f"{flag} must be >= 1" in capsys.readouterr().err
