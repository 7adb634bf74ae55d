"""scripts/grid_study.py: its measures find a grid of known amplitude at the LR spacing and
nothing where there is none; the constant-input probe's interior varies only with the LR phase."""
import importlib.util
import math
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("grid_study", os.path.join(ROOT, "scripts", "grid_study.py"))
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)


def _smooth(n, seed):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n, dtype=torch.float64), torch.linspace(0, 1, n, dtype=torch.float64),
                            indexing="ij")
    a, b, c = torch.rand(3, generator=g, dtype=torch.float64)
    return 0.3 + 0.2 * a * yy + 0.2 * b * xx + 0.05 * c * torch.sin(3 * xx + 2 * yy)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_periodic_rms_recovers_a_grid_amplitude(s):
    g = torch.Generator().manual_seed(s)
    cell = torch.randn(s, s, generator=g, dtype=torch.float64)
    cell = cell - cell.mean()
    cell = cell / cell.pow(2).mean().sqrt() * (0.3 / 255)  # RMS 0.3 levels
    n = 48 * s
    grid = cell.repeat(n // s, n // s)
    noise = torch.randn(n, n, generator=g, dtype=torch.float64) * (2 / 255)
    assert gs.periodic_rms(grid, s) == pytest.approx(0.3, rel=1e-9)
    # white noise of 2 levels leaves only its average over 48^2 cells: ~2/48 levels
    assert gs.periodic_rms(grid + noise, s) == pytest.approx(0.3, abs=0.1)
    assert gs.periodic_rms(noise, s) < 0.1
    # a level shift is no grid; lowfreq_rms sees it instead
    assert gs.periodic_rms(grid + 1.0 / 255, s) == pytest.approx(0.3, rel=1e-9)
    assert gs.lowfreq_rms(torch.full((n, n), 0.5 / 255, dtype=torch.float64), 4 * s) == pytest.approx(0.5)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_peak_db_stands_out_only_with_a_grid(s):
    n = 60 * s
    img = (_smooth(n, s) * 255).round() / 255  # 8-bit, as an HR photo: white rounding noise
    cell = torch.zeros(s, s, dtype=torch.float64)
    cell[0, :] = 0.2 / 255   # 0.2 levels: under one 8-bit step
    cell[:, 0] += 0.2 / 255
    grid = cell.repeat(n // s, n // s)
    assert gs.peak_db(img, s) < 10
    assert gs.peak_db(img + grid - grid.mean(), s) > 20


def test_constant_input_interior_is_exactly_periodic():
    # The bundled model on a flat colour: past the encoder's receptive field every feature is the
    # same, so all the interior's variation sits on the LR phases (std == periodic RMS).
    from fastliif.pretrained import load_pretrained
    model = load_pretrained()
    p = gs.flat_probe(model, 0.5, 2, True, gs.PROBE_BORDER)
    assert math.isfinite(p["interior_std"]) and p["interior_std"] > 0
    assert p["interior_periodic_rms"] == pytest.approx(p["interior_std"], rel=0.02)
    assert model.local_ensemble  # the probe puts the setting back


def test_missing_crops_is_a_one_line_error(tmp_path, capsys):
    assert gs.main(["--crops", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grid_study: no PNG crops in") and "\n" not in err


def test_grid_table_puts_runs_side_by_side(tmp_path, capsys):
    import json
    _spec_t = importlib.util.spec_from_file_location("grid_table", os.path.join(ROOT, "scripts", "grid_table.py"))
    gt = importlib.util.module_from_spec(_spec_t)
    _spec_t.loader.exec_module(gt)

    def crop(name, smooth, scale, psnr, rms, bias):
        return {"name": name, "smooth": smooth, "scale": scale, "bicubic_psnr": 50.0, "model_psnr": psnr,
                "model_periodic_rms": rms, "bicubic_periodic_rms": 0.01, "model_interior_bias": bias,
                "model_peak_db": 20.0, "hr_peak_db": 1.0}

    a = {"crops": [crop("sky", True, 2, 49.5, 0.1, 0.5), crop("rock", False, 2, 51.0, 0.2, -0.1)]}
    b = {"crops": [crop("sky", True, 2, 50.25, 0.02, 0.05), crop("rock", False, 2, 52.0, 0.3, 0.0)]}
    paths = []
    for label, result in (("a", a), ("b", b)):
        paths.append(f"{label}={tmp_path / (label + '.json')}")
        (tmp_path / (label + ".json")).write_text(json.dumps(result))
    md = tmp_path / "t.md"
    assert gt.main(paths + ["--smooth-only", "--md", str(md)]) == 0
    lines = md.read_text().splitlines()
    assert len(lines) == 3 and "gain, a / b" in lines[0]
    assert lines[2].startswith("| sky (smooth) | x2 | 50.00 | -0.50 / +0.25 | 0.100 / 0.020 (0.010) | +0.500 / +0.050")
    capsys.readouterr()
    assert gt.main(["nolabel"]) == 2 and "expected LABEL=PATH" in capsys.readouterr().err
