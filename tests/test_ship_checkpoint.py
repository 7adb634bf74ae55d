"""scripts/ship_checkpoint.py: the bundled-model file is official-format, without optimizer state,
and stored in float16 only when the outputs stay within 1e-3 of the float32 weights."""
import importlib.util
import os

import pytest
import torch

from fastliif.checkpoint import load_checkpoint, read_checkpoint
from fastliif.train import train
from fastliif.train.config import validate
from train_helpers import tiny_liif

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("ship_checkpoint", os.path.join(ROOT, "scripts", "ship_checkpoint.py"))
ship = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(validate(tiny_liif(epoch_max=1, iters_per_epoch=3)), str(out), log=lambda *a: None, progress=False)
    return str(out / "epoch-last.pth")


def test_fp32_copy_drops_the_optimizer_and_keeps_the_weights(trained, tmp_path):
    dst = str(tmp_path / "m.pth")
    assert ship.main([trained, dst]) == 0
    saved = read_checkpoint(dst)
    assert "optimizer" not in saved and saved["fastliif"]["storage"] == "float32"
    src = read_checkpoint(trained)["model"]["sd"]
    assert all(torch.equal(saved["model"]["sd"][k], v) for k, v in src.items())


def test_fp16_is_checked_smaller_and_loads_as_fp32(trained, tmp_path):
    full, half = str(tmp_path / "full.pth"), str(tmp_path / "half.pth")
    ship.main([trained, full])
    assert ship.main([trained, half, "--fp16"]) == 0
    saved = read_checkpoint(half)
    assert all(v.dtype == torch.float16 for v in saved["model"]["sd"].values() if v.is_floating_point())
    assert 0 < saved["fastliif"]["fp16_max_output_difference"] <= 1e-3
    assert os.path.getsize(half) < 0.75 * os.path.getsize(full)
    model = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # computed in fp32
    # the recorded bound is what the two files really do
    assert ship.max_output_difference(full, half) == pytest.approx(saved["fastliif"]["fp16_max_output_difference"])
    assert not [f for f in os.listdir(tmp_path) if "check" in f]  # temporaries removed


def test_fp16_refused_when_outputs_move_too_much(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ship, "FP16_TOLERANCE", 0.0)
    dst = tmp_path / "m.pth"
    assert ship.main([trained, str(dst), "--fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ship_checkpoint: float16 weights change the outputs by") and "\n" not in err
    assert not dst.exists() and not os.listdir(tmp_path)


def test_missing_source_is_one_line(tmp_path, capsys):
    assert ship.main([str(tmp_path / "nope.pth"), str(tmp_path / "m.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ship_checkpoint:") and "nope.pth" in err and "\n" not in err


def test_a_fine_tune_records_the_run_it_started_from(trained, tmp_path):
    stage2_dir = tmp_path / "stage2"
    config = validate(tiny_liif(epoch_max=1, iters_per_epoch=2, init_from=trained))
    train(config, str(stage2_dir), log=lambda *a: None, progress=False)
    dst = str(tmp_path / "m.pth")
    assert ship.main([str(stage2_dir / "epoch-last.pth"), dst]) == 0
    info = read_checkpoint(dst)["fastliif"]
    assert info["config"]["init_from"] == trained
    (stage1,) = info["earlier_stages"]
    assert stage1["checkpoint"] == trained and stage1["epoch"] == 1
    assert stage1["config"]["iters_per_epoch"] == 3 and len(stage1["history"]) == 1
    # a stage whose checkpoint is gone is named, not silently dropped
    moved = str(tmp_path / "moved.pth")
    os.replace(trained, moved)
    try:
        assert ship.earlier_stages(info["config"]) == [{"checkpoint": trained, "missing": True}]
    finally:
        os.replace(moved, trained)
    assert ship.earlier_stages(read_checkpoint(trained)["fastliif"]["config"]) == []
