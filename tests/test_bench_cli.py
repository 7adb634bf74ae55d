"""The benchmark engine (fastliif.bench) and its command line `fastliif bench`."""
import json
import math
import os
import statistics
import sys

import pytest
import torch
from PIL import Image

from fastliif import bench
from fastliif.bench import CASES, CpuTimer, measure_peak, rel_err, run, run_case, select, targets
from fastliif.cli import main


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeClock(CpuTimer):
    """CpuTimer whose clock returns scripted instants: each call lasts the next scripted ms."""

    def __init__(self, durations_ms):
        self.instants = []
        t = 100.0
        for d in durations_ms:
            self.instants += [t, t + d / 1e3]
            t += 1.0
        self.clock = lambda: self.instants.pop(0)


NO_PEAKS = {"cpu": {}}


# ----------------------------------------------------------------------------------------- registry

def test_registry_covers_every_kind_and_builds_tiny_cases_that_agree_with_the_reference():
    assert {c.kind for c in CASES.values()} == set(bench.cases.KINDS)
    assert len({c.name for c in CASES.values()}) == len(CASES)
    assert {c.name for c in CASES.values() if "cpu" in c.devices} >= {"liif_infer_small", "liif_train", "dconv_fwd",
                                                                      "dconv_fwdbwd", "step_liif", "step_udvd"}
    for name, case in CASES.items():
        if case.kind == "train_step":
            continue  # whole models: covered by the runner test below
        inst = case.build("cpu", "tiny")
        ref = inst.fn("reference")()
        got = inst.fn("torch")()
        assert len(got) == len(ref) >= 1 and all(torch.isfinite(t).all() for t in got), name
        assert rel_err(got, ref) < 1e-5, name
        assert case.describe("cpu", "tiny") and "{" not in case.describe("cuda", "full"), name


def test_sizes_precisions_and_gpu_params():
    case = CASES["liif_train"]
    assert case.params("cpu")["b"] == 4 and case.params("cuda")["b"] == 16 and case.params("cuda", "quick")["b"] == 2
    assert case.precisions("cpu") == ("fp32",) and case.precisions("cuda") == ("fp32", "tf32", "bf16")
    assert CASES["dconv_fwd"].precisions("cuda") == ("fp32",)
    assert "liif_4k_x4" in bench.default_cases("cuda") and "liif_4k_x4" not in bench.default_cases("cpu")
    assert CASES["liif_4k_x4"].describe("cuda") == "LIIF inference x4, 960x540 -> 3840x2160 (4K), one call"


def test_select_patterns_and_unknown_names():
    assert select(["dconv_fwd", "liif_infer_*"]) == ["dconv_fwd", "liif_infer_small", "liif_infer_large"]
    assert select(["all"]) == list(CASES)
    with pytest.raises(ValueError, match="unknown case 'nope'; valid: liif_infer_small, "):
        select(["nope"])


# ------------------------------------------------------------------------------------------ runner

def test_runner_medians_speedups_and_rates_with_a_fake_clock():
    case = CASES["dconv_fwd"]
    impls = ["reference", "cpu", "torch"] if bench.implementations(case, "cpu")[1] == "cpu" else ["reference", "torch"]
    script = {"reference": [30.0, 10.0, 20.0], "cpu": [1.0, 9.0, 2.0], "torch": [4.0, 5.0, 100.0]}
    # time_rounds interleaves: round 1 = ref, cpu, torch; round 2 = ...
    durations = [script[i][r] for r in range(3) for i in impls]
    peaks = {"matmul_tflops": {"fp32": 1.0}, "copy_gbs": 10.0}
    rows = run_case(case, "cpu", "tiny", rounds=3, timer=FakeClock(durations), peaks=peaks, impls=impls,
                    log=lambda m: None)
    by = {r["impl"]: r for r in rows}
    assert [r["impl"] for r in rows] == impls
    for impl in impls:
        r = by[impl]
        assert r["times_ms"] == pytest.approx(script[impl])
        assert r["median_ms"] == pytest.approx(statistics.median(script[impl]))
        assert r["min_ms"] == pytest.approx(min(script[impl])) and r["max_ms"] == pytest.approx(max(script[impl]))
        assert r["speedup"] == pytest.approx(20.0 / statistics.median(script[impl]))
        sec = r["median_ms"] * 1e-3
        assert r["gbs"] == pytest.approx(r["bytes"] / sec / 1e9) and r["bandwidth_fraction"] == pytest.approx(
            r["gbs"] / 10.0)
        assert r["tflops"] == pytest.approx(r["flops"] / sec / 1e12)
        assert r["targets"] == []  # GPU targets: none on CPU rows
    inst = case.build("cpu", "tiny")  # N=1 C=3 4x5 x4, k=5: minimal bytes = 4 * (img + kernel + out)
    assert by["reference"]["bytes"] == 4 * (60 + 400 * 20 + 60 * 16) == inst.work("torch")["bytes"]
    assert by["torch"]["rel_err"] < 1e-5 and by["reference"]["rel_err"] is None


def test_run_writes_table_json_and_chart(tmp_path, one_thread):
    names = ["liif_train", "dconv_fwdbwd", "step_udvd"]
    seen = []
    result, paths, text = run(str(tmp_path), cases=names, size="tiny", rounds=2, peaks=NO_PEAKS,
                              log=lambda m: None, on_row=seen.append)
    assert set(paths) == {"md", "json", "png"} and all(os.path.exists(p) for p in paths.values())
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["size"] == "tiny" and data["rounds"] == 2 and data["errors"] == []
    assert {r["case"] for r in data["results"]} == set(names) and len(seen) == len(data["results"])
    for r in data["results"]:
        assert len(r["times_ms"]) == 2 and all(t > 0 for t in r["times_ms"])
        for key in ("speedup", "memory_ratio", "median_ms"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["case"], r["impl"], key)
        if r["impl"] != "reference" and r["kind"] != "train_step":
            assert r["rel_err"] < 1e-5, (r["case"], r["impl"], r["rel_err"])
    md = (tmp_path / "bench.md").read_text()
    assert md == text
    assert len([line for line in md.splitlines() if line.startswith("| cpu |")]) == len(data["results"])
    png = Image.open(tmp_path / "bench.png")
    assert png.format == "PNG" and png.width > 500


def test_a_failing_case_is_recorded_and_the_run_goes_on(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kernel exploded")
    monkeypatch.setitem(bench.cases.BUILDERS, "dconv_fwd", boom)
    result, paths, text = run(None, cases=["dconv_fwd", "dconv_fwdbwd"], size="tiny", rounds=1, peaks=NO_PEAKS,
                              log=lambda m: None)
    assert paths == {}
    assert result["errors"] == [{"device": "cpu", "case": "dconv_fwd", "error": "RuntimeError: kernel exploded"}]
    assert {r["case"] for r in result["results"]} == {"dconv_fwdbwd"}
    assert "dconv_fwd: RuntimeError: kernel exploded" in text


def test_writer_is_atomic(tmp_path, monkeypatch):
    result, paths, _ = run(str(tmp_path), cases=["dconv_fwd"], size="tiny", rounds=1, peaks=NO_PEAKS,
                           chart=False, log=lambda m: None)
    before = {p: open(p, "rb").read() for p in paths.values()}
    result["results"][0]["oops"] = object()  # not JSON: the second write fails half-way
    with pytest.raises(TypeError):
        bench.writer.write(str(tmp_path), result, chart=False)
    assert {p: open(p, "rb").read() for p in paths.values()} == before  # old files intact
    assert sorted(os.listdir(tmp_path)) == ["bench.json", "bench.md"]  # no temporary left behind


def test_targets_met_and_missed_on_gpu_rows():
    case = CASES["liif_4k_x4"]

    def row(impl, prec, ms, **kw):
        base = {"device": "cuda", "case": case.name, "impl": impl, "precision": prec, "median_ms": ms,
                "speedup": 1.0, "memory_ratio": 1.0, "peak_mib": 100.0, "peak_fraction": None}
        return {**base, **kw}
    rows = [row("reference", "fp32", 100.0), row("triton", "fp32", 20.0, speedup=5.0),
            row("torch", "fp32", 50.0, speedup=2.0),
            row("reference", "tf32", 40.0), row("triton", "tf32", 10.0, speedup=4.0),
            row("triton", "bf16", 4.0, speedup=3.0, peak_fraction=0.3, peak_mib=3000.0)]
    targets.evaluate(case, rows)
    verdict = {(r["impl"], r["precision"]): {x["target"]: x["met"] for x in r["targets"]} for r in rows}
    assert verdict[("reference", "fp32")] == {} and verdict[("torch", "fp32")] == {}
    assert verdict[("triton", "fp32")] == {"speedup >= 4x": True, "extra memory < 2 GB": True}
    assert verdict[("triton", "tf32")] == {"speedup >= 4x": True, "tf32 >= 12x fp32 reference": False,
                                           "extra memory < 2 GB": True}
    assert verdict[("triton", "bf16")] == {"speedup >= 4x": False, "bf16 >= 40% of matmul peak": False,
                                           "extra memory < 2 GB": False}
    assert targets.fmt(rows[4]["targets"][1]) == "tf32 >= 12x fp32 reference: MISSED (10x)"
    assert targets.fmt(rows[5]["targets"][1]) == "bf16 >= 40% of matmul peak: MISSED (30%)"
    cpu = [dict(r, device="cpu") for r in rows]
    targets.evaluate(case, cpu)
    assert all(r["targets"] == [] for r in cpu)


def test_peak_memory_sees_a_large_allocation():
    _, peak = measure_peak(lambda: torch.ones(64, 2**20).sum(), "cpu")  # 256 MiB, touched
    assert 200 * 2**20 < peak < 400 * 2**20


def test_machine_peaks_are_positive():
    p = bench.machine_peaks("cpu", "tiny", rounds=1)
    assert p["matmul_tflops"]["fp32"] > 0 and p["copy_gbs"] > 0 and p["matmul_n"] == 128


# --------------------------------------------------------------------------------------------- CLI

def test_cli_quick_subset_writes_table_png_and_json(tmp_path, capsys):
    assert main(["bench", "--quick", "--threads", "1", "--rounds", "1", "--device", "cpu",
                 "--cases", "dconv_fwd,dconv_fwdbwd", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| cpu |")]
    assert {line.split("|")[4].strip() for line in rows} >= {"reference", "torch"}
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["size"] == "quick" and {r["case"] for r in data["results"]} == {"dconv_fwd", "dconv_fwdbwd"}
    assert data["peaks"]["cpu"]["copy_gbs"] > 0
    assert Image.open(tmp_path / "bench.png").format == "PNG"


def test_cli_bad_case_name_is_one_line_exit_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["bench", "--cases", "dconv_fwd,liif_nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown case 'liif_nope'" in err and "liif_infer_small" in err
    assert not out.exists()


def test_cli_without_matplotlib_fails_before_work_unless_no_chart(tmp_path, capsys, monkeypatch, one_thread):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "o"
    assert main(["bench", "--quick", "--cases", "dconv_fwd", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "matplotlib" in err and "--no-chart" in err
    assert not out.exists()
    assert main(["bench", "--quick", "--rounds", "1", "--device", "cpu", "--cases", "dconv_fwd", "--no-chart",
                 "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["bench.json", "bench.md"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cli_cuda_without_a_gpu(capsys):
    assert main(["bench", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--threads", "--rounds"])
def test_bad_counts_rejected(tmp_path, capsys, flag):
    assert main(["bench", "--quick", flag, "0", "--out", str(tmp_path)]) == 2
    assert f"{flag} must be >= 1" in capsys.readouterr().err


def test_cli_list(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in CASES)


def test_each_precision_is_compared_with_the_reference_at_that_precision(monkeypatch):
    # CUDA runs LIIF cases at fp32, tf32 and bf16; here the same loop on CPU (torch backend)
    monkeypatch.setattr(bench.cases.Case, "precisions", lambda self, device: ("fp32", "tf32", "bf16"))
    script = [40.0, 10.0, 30.0, 3.0, 20.0, 40.0]  # per precision: reference, then torch (1 round)
    rows = run_case(CASES["liif_infer_small"], "cpu", "tiny", rounds=1, timer=FakeClock(script),
                    peaks={"matmul_tflops": {"fp32": 1.0, "bf16": 2.0}}, impls=["reference", "torch"],
                    log=lambda m: None)
    got = {(r["precision"], r["impl"]): r for r in rows}
    assert [got[(p, "torch")]["speedup"] for p in ("fp32", "tf32", "bf16")] == pytest.approx([4.0, 10.0, 0.5])
    assert got[("tf32", "torch")]["peak_fraction"] is None  # no tf32 peak measured
    assert got[("bf16", "torch")]["peak_fraction"] == pytest.approx(got[("bf16", "torch")]["tflops"] / 2.0)
    assert got[("bf16", "torch")]["rel_err"] < 2e-2  # bf16 autocast: the reference ran in bf16 too
