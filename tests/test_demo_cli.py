"""`fastliif demo`: the three-panel PNG and the Y-PSNRs (a tiny random LIIF stands in for the bundled one)."""
import re

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

import fastliif.pretrained
from fastliif.checkpoint import save_checkpoint
from fastliif.cli import main
from fastliif.demo import HEADER, y_psnr
from fastliif.nn import LIIF


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = LIIF({"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
                 {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}})
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pth")
    save_checkpoint(model, path)
    return path


@pytest.mark.parametrize("scale", ["4", "3"])
def test_demo_writes_three_panels_and_psnrs(tmp_path, ckpt, capsys, scale):
    out = tmp_path / "demo.png"
    assert main(["demo", "--model", ckpt, "--out", str(out), "--scale", scale]) == 0
    text = capsys.readouterr().out
    sample = Image.open(fastliif.pretrained.sample_image_path())
    img = Image.open(out)
    assert img.size == (3 * sample.width, sample.height + HEADER)
    psnrs = [float(v) for v in re.findall(r"Y-PSNR\s+([0-9.]+) dB", text)]
    assert len(psnrs) == 2 and all(10 < p < 60 for p in psnrs)
    assert "bicubic" in text and "LIIF" in text and str(out) in text
    # the right panel is the original, untouched
    right = np.asarray(img)[HEADER:, 2 * sample.width:]
    assert np.array_equal(right, np.asarray(sample.convert("RGB")))


def test_y_psnr_matches_skimage():
    rng = np.random.default_rng(0)
    hr = rng.random((3, 20, 24))
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    y = lambda a: rgb2ycbcr(a.transpose(1, 2, 0))[..., 0]  # noqa: E731  (16 + 65.481 R + ... in 0-255)
    want = peak_signal_noise_ratio(y(hr)[3:-3, 3:-3], y(sr)[3:-3, 3:-3], data_range=255)
    got = y_psnr(torch.from_numpy(sr), torch.from_numpy(hr), shave=3)
    assert abs(got - want) < 1e-3


def test_demo_errors(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "liif-edsr-baseline.pth")
    monkeypatch.setattr(fastliif.pretrained, "DEFAULT_CHECKPOINT", missing)
    assert main(["demo", "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert missing in err and "--model" in err and "Traceback" not in err
    assert main(["demo", "--scale", "0.5", "--out", str(tmp_path / "d.png")]) == 2
    assert ">= 1" in capsys.readouterr().err
    assert not (tmp_path / "d.png").exists()


def test_demo_writes_atomically_and_refuses_bad_formats_first(tmp_path, ckpt, capsys, monkeypatch):
    import fastliif.atomic
    import fastliif.demo
    replaced = []
    real = fastliif.atomic.os.replace
    monkeypatch.setattr(fastliif.atomic.os, "replace", lambda src, dst: replaced.append(dst) or real(src, dst))
    out = tmp_path / "demo.png"
    assert main(["demo", "--model", ckpt, "--out", str(out), "--scale", "2", "--device", "cpu"]) == 0
    assert replaced == [str(out)]
    monkeypatch.setattr(fastliif.demo, "upscale_tensor", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert main(["demo", "--model", ckpt, "--out", str(tmp_path / "demo.ico")]) == 2
    err = capsys.readouterr().err
    assert "cannot write .ico images" in err and "Traceback" not in err
    assert not (tmp_path / "demo.ico").exists()
