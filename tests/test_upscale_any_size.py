"""`fastliif upscale` at any size and without losing files: tiled encoder vs untiled, NaN output,
output formats, atomic writes (kill, disk full, concurrent writers), device/backend mismatch."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

import fastliif.atomic
import fastliif.reference.rdn
import fastliif.upscale as up
from fastliif.checkpoint import save_checkpoint
from fastliif.cli import main
from fastliif.models import make
from fastliif.nn import LIIF
from fastliif.pretrained import to_reference
from fastliif.reference.coord import make_cell, make_coord
from fastliif.tiling import encode_region, encode_tiled, receptive_radius

from test_upscale_cli import make_tiny_checkpoint, random_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture
def tiny_rdn(monkeypatch):
    # the real RDN class with a shallow configuration: 2 blocks of 2 convs, growth 4
    monkeypatch.setitem(fastliif.reference.rdn.RDN_CONFIGS, "tiny", (2, 2, 4))
    torch.manual_seed(5)
    return make({"name": "rdn", "args": {"G0": 6, "RDNconfig": "tiny", "no_upsampling": True}}).eval()


def tiny_edsr(n_resblocks=2, seed=4):
    torch.manual_seed(seed)
    return make({"name": "edsr-baseline", "args": {"n_resblocks": n_resblocks, "n_feats": 6,
                                                   "no_upsampling": True}}).eval()


# ------------------------------------------------------------------------ receptive field, tiles

def test_receptive_radius_counts_every_conv(tiny_rdn):
    assert receptive_radius(tiny_edsr(2)) == 1 + 2 * 2 + 1  # head, 2 per resblock, body tail
    assert receptive_radius(make({"name": "edsr-baseline", "args": {"no_upsampling": True}})) == 34
    assert receptive_radius(tiny_rdn) == 2 + 2 * 2 + 1  # SFENet1/2, convs of each RDB, GFF's 3x3
    # cannot be bounded: an upsampling encoder, a subclass (forward may be anything), other layers
    assert receptive_radius(make({"name": "edsr-baseline", "args": {"n_resblocks": 1, "scale": 2}})) is None
    from fastliif.reference.edsr import EDSR

    class Mine(EDSR):
        pass
    assert receptive_radius(Mine(1, 4, no_upsampling=True)) is None
    assert receptive_radius(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1))) is None


@pytest.mark.parametrize("which", ["edsr", "rdn"])
def test_tiled_features_equal_untiled(which, tiny_rdn):
    encoder = tiny_edsr() if which == "edsr" else tiny_rdn
    radius = receptive_radius(encoder)
    torch.manual_seed(6)
    inp = torch.randn(1, 3, 47, 39)  # odd sizes, several 10x10 tiles with partial ones at the edges
    with torch.no_grad():
        whole = encoder(inp)
        tiled = encode_tiled(encoder, inp, tile=10)
        assert whole.std() > 0.05
        err = (tiled - whole).abs().max()
        assert err < 1e-5 * whole.abs().max()
        # the halo is needed: one pixel less and an interior tile's features change (by little
        # in RDN, whose deepest path is damped at random init, but far above rounding)
        short = encode_region(encoder, inp, (20, 30), (15, 25), radius - 1)
        assert (short - whole[..., 20:30, 15:25]).abs().max() > max(2e-6, 20 * err)


def test_tiled_upscale_equals_untiled_and_model_forward(ckpt, monkeypatch):
    from fastliif.pretrained import load_pretrained
    model = load_pretrained(ckpt)
    torch.manual_seed(7)
    x = torch.rand(3, 31, 27)
    for H, W in ((93, 81), (70, 55), (31, 27)):  # x3 (ties at the borders), non-integer, x1
        tiled = up.upscale_tensor(model, x, (H, W), progress=False, tile=8)  # 4x4 encoder tiles
        whole = up.upscale_tensor(model, x, (H, W), progress=False, tile=10_000)
        coord = make_coord((H, W))[None]
        with torch.no_grad():
            forward = model((x[None] - 0.5) / 0.5, coord, make_cell(coord, (H, W)))
        forward = (forward * 0.5 + 0.5).clamp(0, 1)[0].view(H, W, 3).permute(2, 0, 1)
        assert whole.std() > 0.05
        assert (tiled - whole).abs().max() < 1e-5
        assert (whole - forward).abs().max() < 1e-5
    # the reference module takes the same tiled path (features, not projections)
    ref = to_reference(model).eval()
    a = up.upscale_tensor(ref, x, (70, 55), progress=False, tile=8)
    b = up.upscale_tensor(model, x, (70, 55), progress=False, tile=8)
    assert (a - b).abs().max() < 1e-5


class OwnReLU(torch.nn.Module):
    """A layer receptive_radius does not know: it could be anything, so the encoder runs whole."""

    def forward(self, x):
        return torch.relu(x)


def test_unboundable_encoder_is_encoded_whole(ckpt, monkeypatch):
    from fastliif.pretrained import load_pretrained
    model = load_pretrained(ckpt)
    assert up.tile_radius(model) == 4
    torch.manual_seed(8)
    x = torch.rand(3, 12, 10)
    tiled = up.upscale_tensor(model, x, (30, 25), progress=False, tile=4)
    model.encoder.body[0].body[1] = OwnReLU()
    assert up.tile_radius(model) is None
    calls = []
    real = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda inp: calls.append(tuple(inp.shape)) or real(inp))
    whole = up.upscale_tensor(model, x, (30, 25), progress=False, tile=4)  # tile ignored: encoded whole
    assert calls == [(1, 3, 12, 10)]
    assert (whole - tiled).abs().max() < 1e-5 and whole.std() > 0.05


def test_memory_is_bounded_by_tiles_and_the_8bit_output(ckpt):
    from fastliif.pretrained import load_pretrained
    model = load_pretrained()  # the bundled model
    n1 = model.imnet.layers[0].out_features  # the fused first-layer projection: n1 floats per LR pixel
    host, device = up.estimate_memory(model, (3000, 4000), (6000, 8000), 3)
    assert host < 8000 * 6000 * 8 + 3000 * 4000 * 16 + 1  # 8-bit output + Pillow's copy + input
    assert device < 3000 * 4000 * 4 * (3 + n1) + 2 * 2**30  # projected map + one tile + queries
    # an output whose 8-bit image alone passes the RAM is refused
    with pytest.raises(up.UpscaleError, match="needs about"):
        up.check_memory(model, (8, 8), (400_000, 400_000), 3, "cpu")


# ------------------------------------------------------------------------------------- NaN / inf

def nan_checkpoint(path, value=float("nan")):
    torch.manual_seed(0)
    model = LIIF({"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
                 {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}})
    with torch.no_grad():
        model.imnet.layers[-1].bias[1] = value
    save_checkpoint(model, str(path))
    return str(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_output_is_an_error_and_nothing_is_written(tmp_path, capsys, value):
    src = random_image(tmp_path / "in.png", 9, 8)
    before = open(src, "rb").read()
    ckpt = nan_checkpoint(tmp_path / "nan.pth", value)
    for out in (str(tmp_path / "new.png"), src):  # a new file, and -o the input itself
        assert main(["upscale", src, "-o", out, "--scale", "2", "--model", ckpt, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert "NaN or infinite" in err and "Traceback" not in err
    assert not (tmp_path / "new.png").exists() and open(src, "rb").read() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


# ----------------------------------------------------------------------------------------- formats

@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_accepted_formats_write_faithfully(tmp_path, ckpt, capsys, ext, mode):
    src = random_image(tmp_path / "in.png", 11, 9, mode=mode)
    ref = str(tmp_path / "ref.png")
    out = str(tmp_path / f"out{ext}")
    args = ["--scale", "1.7", "--model", ckpt, "--device", "cpu"]
    assert main(["upscale", src, "-o", ref, *args]) == 0
    assert main(["upscale", src, "-o", out, *args]) == 0
    err = capsys.readouterr().err
    img, want = Image.open(out), Image.open(ref)
    assert img.size == want.size == (round(9 * 1.7), round(11 * 1.7))
    keeps_alpha = ext not in (".jpg", ".jpeg", ".bmp")
    if mode == "RGBA" and not keeps_alpha:
        assert "alpha" in err and img.mode == "RGB"
        want = want.convert("RGB")
    got = np.asarray(img.convert(want.mode), dtype=np.int16)
    diff = np.abs(got - np.asarray(want, dtype=np.int16))
    if ext in (".jpg", ".jpeg"):
        assert diff.mean() < 8  # quality 95: lossy by nature
    else:
        assert diff.max() == 0  # PNG, lossless WebP, TIFF, BMP: the same pixels


@pytest.mark.parametrize("name", ["o.ico", "o.icns", "o.psd", "o.fits", "o.gif", "o.xyz", "noext"])
def test_other_formats_refused_before_any_work(tmp_path, ckpt, capsys, monkeypatch, name):
    def never(*args, **kwargs):
        raise AssertionError("nothing may be read or computed for a refused format")
    monkeypatch.setattr(up, "open_image", never)
    monkeypatch.setattr(up, "upscale_tiles", never)
    src = random_image(tmp_path / "in.png", 8, 8)
    assert main(["upscale", src, "-o", str(tmp_path / name), "--scale", "2", "--model", ckpt]) == 2
    err = capsys.readouterr().err.strip()
    ext = os.path.splitext(name)[1] or "a file without extension"
    assert len(err.splitlines()) == 1 and f"cannot write {ext} images" in err
    assert ".png, .tif, .tiff, .webp" in err and "Traceback" not in err
    assert not (tmp_path / name).exists()


def test_size_limits_of_formats_refused_before_any_work(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.setattr(up, "upscale_tiles", lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed")))
    src = random_image(tmp_path / "in.png", 8, 8)
    assert main(["upscale", src, "-o", str(tmp_path / "o.webp"), "--size", "16384x8", "--model", ckpt]) == 2
    assert "WEBP images are at most 16383 pixels a side" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- atomic writes

def test_output_over_the_input_survives_a_full_disk(tmp_path, ckpt, capsys, monkeypatch):
    src = random_image(tmp_path / "in.png", 9, 8)
    before = open(src, "rb").read()
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fastliif.atomic.os, "fsync", full)
    assert main(["upscale", src, "-o", src, "--scale", "2", "--model", ckpt, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "Traceback" not in err
    monkeypatch.setattr(fastliif.atomic.os, "fsync", real)
    assert open(src, "rb").read() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # the temporary was removed


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from PIL import Image
    import fastliif.atomic
    real = Image.Image.save
    def slow(self, fp, *args, **kwargs):
        real(self, fp, *args, **kwargs)   # the whole image is in the temporary file, not yet renamed
        open(sys.argv[-1], "w").close()   # tell the test we are mid-write
        time.sleep(60)
    Image.Image.save = slow
    from fastliif.cli import main
    sys.exit(main(sys.argv[1:-1]))
""")


def test_output_over_the_input_survives_a_kill_mid_write(tmp_path, ckpt):
    src = random_image(tmp_path / "in.png", 9, 8)
    before = open(src, "rb").read()
    flag = tmp_path / "writing"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, "upscale", src, "-o", src, "--scale", "3",
                             "--model", ckpt, "--device", "cpu", "--no-progress", str(flag)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not flag.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the writer never reached the write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert open(src, "rb").read() == before  # the input, also the output path, is intact
    assert Image.open(src).size == (8, 9)


def test_two_concurrent_writers_leave_one_complete_file(tmp_path, ckpt):
    src = random_image(tmp_path / "in.png", 20, 16)
    out = str(tmp_path / "out.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.Popen([sys.executable, "-m", "fastliif", "upscale", src, "-o", out, "--scale", s, "--model",
                              ckpt, "--device", "cpu", "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE) for s in ("3", "4")]
    for p in runs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    img = Image.open(out)
    img.load()  # complete: decodes to the end
    assert img.size in ((48, 60), (64, 80))
    scale = "3" if img.size == (48, 60) else "4"
    alone = str(tmp_path / "alone.png")
    assert main(["upscale", src, "-o", alone, "--scale", scale, "--model", ckpt, "--device", "cpu"]) == 0
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(alone)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.png", "in.png", "out.png"]


# --------------------------------------------------------------------------------- device / backend

def test_cpu_backend_with_a_cuda_device_is_a_clear_error(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    assert up.parse_device("auto", "cpu").type == "cpu"  # auto follows a CPU-only backend
    assert up.parse_device("auto", "auto").type == "cuda"
    src = random_image(tmp_path / "in.png", 8, 8)
    assert main(["upscale", src, "-o", str(tmp_path / "o.png"), "--scale", "2", "--model", ckpt, "--backend", "cpu",
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--backend cpu runs on the CPU but the device is cuda" in err
