"""`fastliif upscale`: sizes, image modes, the plumbing against the model's own forward, and errors."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import fastliif.pretrained
import fastliif.upscale
from fastliif.checkpoint import load_checkpoint, save_checkpoint
from fastliif.cli import main
from fastliif.nn import LIIF
from fastliif.pretrained import load_pretrained
from fastliif.reference import make_cell, make_coord
from fastliif.upscale import (QUERY_CHUNK, REFERENCE_CHUNK, UpscaleError, output_size, parse_size,
                              rows_per_call, upscale_tensor)


# Every comparison here is against the model's forward on the CPU: run the CLI there too, so the
# tests pass unchanged on a GPU machine (where --device auto means cuda).
CPU = ["--device", "cpu"]


def make_tiny_checkpoint(path, seed=0):
    """A random-init LIIF (EDSR-baseline 1 resblock, 8 feats, MLP [16, 16]) whose decoder weights are
    doubled so the output varies clearly across the image (default init is nearly constant)."""
    torch.manual_seed(seed)
    model = LIIF({"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
                 {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}})
    with torch.no_grad():
        for p in model.imnet.parameters():
            p.mul_(2)
    save_checkpoint(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def random_image(path, h, w, mode="RGB", seed=1, **save):
    rng = np.random.default_rng(seed)
    bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    # smooth random content plus noise: structure for the encoder, never constant
    base = rng.random((h // 3 + 2, w // 3 + 2, bands))
    big = np.asarray(Image.fromarray((base * 255).astype(np.uint8).squeeze()).resize((w, h), Image.BILINEAR),
                     dtype=np.float64).reshape(h, w, bands)
    arr = np.clip(big + rng.normal(0, 20, big.shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr.squeeze(-1) if bands == 1 else arr, mode).save(path, **save)
    return str(path)


def expected_rgb(ckpt, rgb, H, W):
    """The model's own forward on the whole grid, as the official demo (float 3xHxW in [0, 1])."""
    model = load_checkpoint(ckpt).eval()
    coord = make_coord((H, W)).unsqueeze(0)
    cell = make_cell(coord, (H, W))
    with torch.no_grad():
        pred = model(((rgb - 0.5) / 0.5).unsqueeze(0), coord, cell)[0]
    return (pred * 0.5 + 0.5).clamp(0, 1).view(H, W, 3).permute(2, 0, 1)


def to8(x):
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def read(path):
    img = Image.open(path)
    return img, torch.from_numpy(np.asarray(img).copy())


@pytest.mark.parametrize("how, value, hw", [("--scale", "2.5", (35, 25)), ("--scale", "3", (42, 30)),
                                            ("--scale", "1", (14, 10)), ("--size", "33x17", (17, 33))])
def test_rgb_equals_model_forward(tmp_path, ckpt, capsys, how, value, hw):
    src = random_image(tmp_path / "in.png", 14, 10)
    out = str(tmp_path / "out.png")
    assert main(["upscale", *CPU, src, "-o", out, how, value, "--model", ckpt]) == 0
    printed = capsys.readouterr().out
    assert f"-> {hw[1]}x{hw[0]}" in printed and " s (" in printed and "wrote" in printed
    img, got = read(out)
    assert img.mode == "RGB" and img.size == (hw[1], hw[0])
    rgb = torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255).permute(2, 0, 1)
    want = to8(expected_rgb(ckpt, rgb, *hw)).permute(1, 2, 0)
    assert got.float().std() > 10  # the check below is not comparing flat images
    assert torch.equal(got, want)


def test_grayscale_stays_gray(tmp_path, ckpt):
    src = random_image(tmp_path / "g.png", 12, 9, mode="L")
    out = str(tmp_path / "g2.png")
    assert main(["upscale", *CPU, src, "-o", out, "--size", "20x30", "--model", ckpt, "--backend", "torch"]) == 0
    img, got = read(out)
    assert img.mode == "L" and img.size == (20, 30)
    gray = torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255)[None].expand(3, -1, -1)
    rgb = expected_rgb(ckpt, gray, 30, 20)
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    assert (got.int() - to8(luma).int()).abs().max() <= 1


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_kept_as_bicubic(tmp_path, ckpt, mode):
    src = random_image(tmp_path / "a.png", 10, 13, mode=mode)
    out = str(tmp_path / "a2.png")
    assert main(["upscale", *CPU, src, "-o", out, "--scale", "2.2", "--model", ckpt]) == 0
    img, got = read(out)
    H, W = round(10 * 2.2), round(13 * 2.2)
    assert img.mode == mode and img.size == (W, H)
    arr = torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255).permute(2, 0, 1)
    alpha = F.interpolate(arr[-1:][None], size=(H, W), mode="bicubic", align_corners=False)[0, 0]
    assert torch.equal(got[..., -1], to8(alpha))
    color = arr[:-1].expand(3, -1, -1)  # gray runs as RGB
    want = expected_rgb(ckpt, color, H, W)
    if mode == "LA":
        want = (0.299 * want[0] + 0.587 * want[1] + 0.114 * want[2])[None]
    assert (got[..., :-1].int() - to8(want).permute(1, 2, 0).int()).abs().max() <= 1


def test_jpeg_in_and_out(tmp_path, ckpt, capsys):
    src = random_image(tmp_path / "in.jpg", 16, 12, quality=90)
    out = str(tmp_path / "out.jpg")
    assert main(["upscale", *CPU, src, "-o", out, "--scale", "1.5", "--model", ckpt]) == 0
    img, got = read(out)
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (18, 24)
    rgb = torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255).permute(2, 0, 1)
    want = expected_rgb(ckpt, rgb, 24, 18).permute(1, 2, 0) * 255
    assert (got.float() - want).abs().mean() < 6  # JPEG quality 95 loss only


def test_rgba_to_jpeg_says_alpha_dropped(tmp_path, ckpt, capsys):
    src = random_image(tmp_path / "a.png", 8, 8, mode="RGBA")
    assert main(["upscale", *CPU, src, "-o", str(tmp_path / "a.jpg"), "--scale", "2", "--model", ckpt]) == 0
    assert "alpha" in capsys.readouterr().err
    assert Image.open(tmp_path / "a.jpg").mode == "RGB"


def test_reference_backend_and_slices_match_fused(ckpt):
    torch.manual_seed(3)
    x = torch.rand(3, 11, 8)
    fused = load_pretrained(ckpt)
    ref = load_pretrained(ckpt, backend="reference")
    assert not isinstance(ref, LIIF)  # the oracle module, not the fused one
    one = upscale_tensor(fused, x, (29, 23), slices=1)
    sliced = upscale_tensor(fused, x, (29, 23), slices=4)
    oracle = upscale_tensor(ref, x, (29, 23))
    assert one.shape == (3, 29, 23) and one.std() > 0.05
    assert (sliced - one).abs().max() < 1e-6
    assert (oracle - one).abs().max() < 1e-5
    # row bands of at most QUERY_CHUNK queries (fused) or REFERENCE_CHUNK (reference), fewer rows with slices
    assert rows_per_call(fused, (2048, 1024)) == QUERY_CHUNK // 1024
    assert rows_per_call(fused, (2048, 1024), slices=16) == 128
    with pytest.raises(UpscaleError, match="slices must be >= 1"):
        rows_per_call(fused, (10, 10), slices=0)
    assert rows_per_call(fused, (100, 100)) == 100
    assert rows_per_call(ref, (100, 1000)) == REFERENCE_CHUNK // 1000


def test_reference_backend_cli(tmp_path, ckpt):
    src = random_image(tmp_path / "in.png", 9, 7)
    a, b = str(tmp_path / "ref.png"), str(tmp_path / "fused.png")
    assert main(["upscale", *CPU, src, "-o", a, "--scale", "2", "--model", ckpt, "--backend", "reference"]) == 0
    assert main(["upscale", *CPU, src, "-o", b, "--scale", "2", "--model", ckpt, "--backend", "cpu"]) == 0
    assert (read(a)[1].int() - read(b)[1].int()).abs().max() <= 1


def test_sizes():
    assert output_size((10, 20), scale=2.5) == (25, 50)
    assert output_size((10, 20), size=(10, 64)) == (10, 64)
    assert parse_size("640x480") == (480, 640)
    for bad in ("0x10", "10x0"):
        with pytest.raises(UpscaleError, match="at least 1x1"):
            parse_size(bad)
    with pytest.raises(UpscaleError, match="WIDTHxHEIGHT"):
        parse_size("ten by ten")
    with pytest.raises(UpscaleError, match="smaller than the input"):
        output_size((10, 20), size=(10, 19))
    for bad, msg in ((0, "positive"), (-1, "positive"), (float("nan"), "finite"), (float("inf"), "finite"),
                     (0.5, ">= 1")):
        with pytest.raises(UpscaleError, match=msg):
            output_size((10, 20), scale=bad)


def _fails(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, argv
    assert "error:" in err and match in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, match", [
    (["--scale", "0"], "positive"), (["--scale", "-1"], "positive"), (["--scale", "nan"], "finite"),
    (["--scale", "0.5"], ">= 1"), (["--scale", "two"], "number"), (["--size", "0x10"], "at least 1x1"),
    (["--size", "5x5"], "smaller than the input"), (["--scale", "2", "--precision", "bf16"], "CUDA"),
])
def test_bad_sizes_are_clear_errors(tmp_path, ckpt, capsys, extra, match):
    src = random_image(tmp_path / "in.png", 8, 8)
    _fails(capsys, ["upscale", *CPU, src, "-o", str(tmp_path / "o.png"), "--model", ckpt, *extra], match)
    assert not (tmp_path / "o.png").exists()


def test_missing_and_garbage_inputs(tmp_path, ckpt, capsys):
    out = str(tmp_path / "o.png")
    _fails(capsys, ["upscale", *CPU, str(tmp_path / "nope.png"), "-o", out, "--scale", "2", "--model", ckpt],
           "not found")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    _fails(capsys, ["upscale", *CPU, str(garbage), "-o", out, "--scale", "2", "--model", ckpt], "not a readable image")
    src = random_image(tmp_path / "in.png", 8, 8)
    _fails(capsys, ["upscale", *CPU, src, "-o", str(tmp_path / "o.xyz"), "--scale", "2", "--model", ckpt],
           "cannot write .xyz images")
    _fails(capsys, ["upscale", *CPU, src, "-o", out, "--scale", "2", "--model", str(tmp_path / "no.pth")], "not found")


def test_too_large_output_rejected_before_allocating(tmp_path, ckpt, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("upscale_tensor must not run for an output that cannot fit")
    monkeypatch.setattr(fastliif.upscale, "upscale_tensor", never)
    src = random_image(tmp_path / "in.png", 8, 8)
    _fails(capsys, ["upscale", *CPU, src, "-o", str(tmp_path / "o.png"), "--scale", "100000", "--model", ckpt],
           "800000x800000 output needs about")
    _fails(capsys, ["upscale", *CPU, src, "-o", str(tmp_path / "o.jpg"), "--size", "70000x10", "--model", ckpt],
           "JPEG")


def test_bundled_model_missing_names_path_and_flag(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "assets" / "liif-edsr-baseline.pth")
    monkeypatch.setattr(fastliif.pretrained, "DEFAULT_CHECKPOINT", missing)
    src = random_image(tmp_path / "in.png", 8, 8)
    _fails(capsys, ["upscale", *CPU, src, "-o", str(tmp_path / "o.png"), "--scale", "2"], missing)
    with pytest.raises(FileNotFoundError, match="--model"):
        load_pretrained()


def test_memory_estimate_grows_with_output(ckpt):
    model = load_pretrained(ckpt)
    small = sum(fastliif.upscale.estimate_memory(model, (8, 8), (32, 32), 3))
    big = sum(fastliif.upscale.estimate_memory(model, (8, 8), (3200, 3200), 3))
    assert 0 < small < big and math.isfinite(big)
    assert fastliif.upscale.available_memory("cpu") > 0


def test_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastliif", "upscale", str(tmp_path / "none.png"), "-o",
                           str(tmp_path / "o.png"), "--scale", "2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_device_auto_picks_cuda_only_when_available():
    import torch
    from fastliif.upscale import UpscaleError, parse_device
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UpscaleError, match="--device must be cpu or cuda"):
        parse_device("tpu")


def test_large_output_in_bounded_bands_and_slices_match(tmp_path, ckpt, monkeypatch, capsys):
    import fastliif.upscale as up
    calls = []
    real = up.make_cell
    monkeypatch.setattr(up, "make_cell", lambda coord, shape: calls.append(len(coord)) or real(coord, shape))
    monkeypatch.setattr(up, "QUERY_CHUNK", 200_000)
    src = random_image(tmp_path / "in.png", 40, 36)
    size = ["--size", "1080x1200", "--model", ckpt]
    assert main(["upscale", *CPU, str(src), "-o", str(tmp_path / "bands.png"), *size]) == 0
    # 1080 x 185 rows per call: 7 bands, none above the chunk, covering the output once
    assert len(calls) == 7 and max(calls) <= 200_000 and sum(calls) == 1080 * 1200
    calls.clear()
    monkeypatch.setattr(up, "QUERY_CHUNK", 1 << 30)
    assert main(["upscale", *CPU, str(src), "-o", str(tmp_path / "one.png"), *size]) == 0
    assert calls == [1080 * 1200]
    calls.clear()
    assert main(["upscale", *CPU, str(src), "-o", str(tmp_path / "sliced.png"), *size, "--slices", "5"]) == 0
    assert len(calls) == 5 and sum(calls) == 1080 * 1200
    one, bands, sliced = (np.asarray(Image.open(tmp_path / n)) for n in ("one.png", "bands.png", "sliced.png"))
    assert one.std() > 5 and np.array_equal(one, bands) and np.array_equal(one, sliced)
