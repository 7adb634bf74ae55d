"""`fastliif eval` and fastliif.evaluate: table, JSON, numbers by hand, reference backend, errors."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastliif import metrics
from fastliif.checkpoint import load_checkpoint, save_checkpoint
from fastliif.cli import main
from fastliif.data.resize import resize
from fastliif.evaluate import evaluate, load_images, parse_scales
from fastliif.models import make
from fastliif.nn import LIIF
from fastliif.reference.coord import make_coord

SIZES = [(45, 38), (50, 41), (37, 52)]  # (H, W): not multiples of 2, 3 or 4


def tiny_liif(seed, imnet=True, **encoder_args):
    torch.manual_seed(seed)
    encoder = {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, **encoder_args}}
    imnet_spec = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}} if imnet else None
    return LIIF(encoder, imnet_spec)


def synthetic_image(rng, h, w):
    """Smooth colour gradients with a rectangle and a disc, 8-bit RGB."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    a = rng.uniform(-1, 1, (3, 3))
    img = np.stack([0.5 + 0.4 * np.sin(3 * (a[c, 0] * x + a[c, 1] * y) + a[c, 2]) for c in range(3)], -1)
    y0, x0 = rng.integers(2, h // 2), rng.integers(2, w // 2)
    img[y0:y0 + h // 3, x0:x0 + w // 4] = rng.uniform(0, 1, 3)
    cy, cx, r = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4), min(h, w) / 6
    img[(np.mgrid[0:h, 0:w][0] - cy) ** 2 + (np.mgrid[0:h, 0:w][1] - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ckpt = str(root / "tiny.pth")
    save_checkpoint(tiny_liif(0, no_upsampling=True), ckpt)
    hr_dir = root / "hr"
    hr_dir.mkdir()
    rng = np.random.default_rng(int(torch.randint(0, 2**31, ())))
    for i, (h, w) in enumerate(SIZES):
        Image.fromarray(synthetic_image(rng, h, w)).save(hr_dir / f"img{i}.png")
    return {"root": root, "ckpt": ckpt, "hr": str(hr_dir)}


def run_cli(capsys, *argv):
    code = main(["eval", *argv, "--no-progress", "--device", "cpu"])  # compared with CPU numbers
    out = capsys.readouterr().out
    assert code == 0
    return out


def table_rows(out):
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| scale")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def by_hand(model, hr, scale, lr=None):
    """PSNR/SSIM of the model and of bicubic on one image, from the model's own forward."""
    h, w = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
    hr = hr[:, :h, :w]
    if lr is None:
        lr = resize(hr, (h // scale, w // scale), "matlab")
    coord = make_coord((h, w))[None]
    cell = torch.empty_like(coord)
    cell[..., 0], cell[..., 1] = 2 / h, 2 / w
    with torch.no_grad():
        pred = model((lr[None] - 0.5) / 0.5, coord, cell) * 0.5 + 0.5
    sr = pred.clamp(0, 1).view(1, h, w, 3).permute(0, 3, 1, 2)
    bic = resize(lr, (h, w), "matlab").clamp(0, 1)[None]
    return [float(f(x, hr[None], "benchmark", scale)) for x in (sr, bic) for f in (metrics.psnr, metrics.ssim)]


def read_png(path):
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def test_table_json_and_numbers_by_hand(setup, capsys, tmp_path):
    js = tmp_path / "r.json"
    out = run_cli(capsys, "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2,3,4",
                  "--json", str(js), "--save-dir", str(tmp_path / "sr"))
    assert "| scale | images | PSNR | SSIM | bicubic PSNR | bicubic SSIM | s/image |" in out
    rows = table_rows(out)
    assert [r[0] for r in rows] == ["2", "3", "4"] and all(r[1] == "3" for r in rows)
    assert all(len(r) == 7 and all(np.isfinite(float(v)) for v in r[2:]) for r in rows)

    result = json.loads(js.read_text())
    # The library call on the same model and images gives the same numbers.
    lib = evaluate(load_checkpoint(setup["ckpt"]), load_images(setup["hr"]), [2, 3, 4], "benchmark",
                   progress=False)
    for got, want, row in zip(result["scales"], lib["scales"], rows):
        for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
            assert got[key] == pytest.approx(want[key], abs=1e-9)
        assert float(row[2]) == pytest.approx(got["psnr"], abs=1e-4)
        assert float(row[5]) == pytest.approx(got["bicubic_ssim"], abs=1e-4)

    # One image at x3 by hand: PNG read with Pillow, MATLAB resize, the model's forward, metrics.
    model = load_checkpoint(setup["ckpt"]).eval()
    hr = read_png(os.path.join(setup["hr"], "img1.png"))
    want = by_hand(model, hr, 3)
    rec = result["scales"][1]["per_image"][1]
    assert rec["name"] == "img1"
    assert [rec["psnr"], rec["ssim"], rec["bicubic_psnr"], rec["bicubic_ssim"]] == pytest.approx(want, abs=1e-6)
    assert want[2] > want[0]  # an untrained model is worse than bicubic: the columns are not swapped

    saved = read_png(tmp_path / "sr" / "x3" / "img1.png")
    assert saved.shape == (3, 50 // 3 * 3, 41 // 3 * 3)


def test_reference_backend_and_div2k_protocol(setup, capsys, tmp_path):
    results = {}
    for backend in ("auto", "reference"):
        js = tmp_path / f"{backend}.json"
        run_cli(capsys, "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2,3.5", "--protocol", "div2k",
                "--backend", backend, "--json", str(js), "--limit", "2")
        results[backend] = json.loads(js.read_text())
    fused, ref = results["auto"]["scales"], results["reference"]["scales"]
    assert [r["scale"] for r in fused] == [2, 3.5] and all(r["images"] == 2 for r in fused)
    for a, b in zip(fused, ref):
        for x, y in zip(a["per_image"], b["per_image"]):
            assert x["psnr"] == pytest.approx(y["psnr"], abs=1e-4)
            assert x["ssim"] == pytest.approx(y["ssim"], abs=1e-5)


def test_paired_lr_folder(setup, capsys, tmp_path):
    # Benchmark layout: LR/X2/<name>x2.png; LR made here with PIL so it differs from the resize path.
    names = ["img0", "img1", "img2"]
    lr_dir = tmp_path / "lr" / "X2"
    lr_dir.mkdir(parents=True)
    for name in names:
        img = Image.open(os.path.join(setup["hr"], f"{name}.png"))
        img.resize((img.width // 2, img.height // 2), Image.BICUBIC).save(lr_dir / f"{name}x2.png")
    js = tmp_path / "r.json"
    run_cli(capsys, "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2", "--lr-data",
            str(tmp_path / "lr"), "--json", str(js))
    rec = json.loads(js.read_text())["scales"][0]["per_image"][2]
    model = load_checkpoint(setup["ckpt"]).eval()
    hr = read_png(os.path.join(setup["hr"], "img2.png"))
    want = by_hand(model, hr, 2, lr=read_png(lr_dir / "img2x2.png"))
    assert [rec["psnr"], rec["ssim"], rec["bicubic_psnr"], rec["bicubic_ssim"]] == pytest.approx(want, abs=1e-6)


def test_fixed_scale_models_skip_other_scales(setup, capsys, tmp_path):
    # Official "EDSR-baseline x2" format: a LIIF without imnet around an upsampling encoder.
    ckpt = str(tmp_path / "x2.pth")
    save_checkpoint(tiny_liif(1, imnet=False, scale=2), ckpt)
    out = run_cli(capsys, "--model", ckpt, "--data", setup["hr"], "--scales", "2,3", "--limit", "1")
    assert [r[0] for r in table_rows(out)] == ["2"] and "x3 skipped: fixed-scale model (x2)" in out

    # A plain fixed-scale network runs at its own scale on [0, 1] images (fastliif's interface).
    torch.manual_seed(2)
    edsr = make({"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "scale": 2}}).eval()
    images = load_images(setup["hr"], limit=1)
    res = evaluate(edsr, images, [2, 4], "benchmark", progress=False)
    assert [r["scale"] for r in res["scales"]] == [2] and res["skipped"][0]["scale"] == 4
    hr = images[0][1][:, :44, :38]
    lr = resize(hr, (22, 19), "matlab")
    with torch.no_grad():
        sr = edsr(lr[None]).clamp(0, 1)
    assert res["scales"][0]["psnr"] == pytest.approx(float(metrics.psnr(sr, hr[None], "benchmark", 2)), abs=1e-6)

    # Models needing more than an LR image (UDVD: kernel and noise maps) are reported, not run.
    res = evaluate(make("udvd-reference"), images, [2], "benchmark", progress=False)
    assert res["scales"] == [] and "needs image, kernel, noise" in res["skipped"][0]["reason"]


def test_data_norm_from_a_fastliif_checkpoint(setup, capsys, tmp_path):
    # fastliif's trainer stores its config; a model trained without data_norm takes raw [0, 1].
    ckpt = str(tmp_path / "trained.pth")
    save_checkpoint(tiny_liif(3, no_upsampling=True), ckpt, fastliif={"config": {"data_norm": None}})
    js = tmp_path / "r.json"
    run_cli(capsys, "--model", ckpt, "--data", setup["hr"], "--scales", "3", "--limit", "1", "--json", str(js))
    got = json.loads(js.read_text())["scales"][0]["psnr"]
    model, images = load_checkpoint(ckpt), load_images(setup["hr"], limit=1)
    raw = evaluate(model, images, [3], progress=False, data_norm={})["scales"][0]["psnr"]
    liif = evaluate(model, images, [3], progress=False)["scales"][0]["psnr"]
    assert got == pytest.approx(raw, abs=1e-9) and abs(got - liif) > 1e-3


def test_parse_scales():
    assert parse_scales("2,3,4,6,12") == [2, 3, 4, 6, 12]
    assert parse_scales(" 2.5, 4 ") == [2.5, 4] and isinstance(parse_scales("4.0")[0], int)
    for bad, msg in (("0", "positive"), ("-2", "positive"), ("x", "bad scale"), ("2,,3", "bad scale"),
                     ("", "no scales"), ("2,2", "repeated"), ("nan", "positive")):
        with pytest.raises(ValueError, match=msg):
            parse_scales(bad)


def test_cli_errors(setup, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    cases = [
        (["--model", str(tmp_path / "missing.pth"), "--data", setup["hr"]], "checkpoint not found"),
        (["--model", setup["ckpt"], "--data", str(empty)], "no images in"),
        (["--model", setup["ckpt"], "--data", str(tmp_path / "nowhere")], "image folder not found"),
        (["--model", setup["ckpt"], "--data", setup["hr"], "--scales", "0"], "scales must be positive"),
        (["--model", setup["ckpt"], "--data", setup["hr"], "--scales", "x"], "bad scale 'x'"),
        (["--model", setup["ckpt"], "--data", setup["hr"], "--limit", "0"], "--limit must be >= 1"),
        (["--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2,3", "--lr-data", str(empty)],
         "no X2 subfolder"),
        (["--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2", "--lr-data", str(empty)],
         "no LR image for 'img0'"),
    ]
    for argv, msg in cases:
        with pytest.raises(SystemExit) as exc:
            main(["eval", *argv, "--no-progress"])
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err
    # Problems found while evaluating: exit code 1 with the image named.
    assert main(["eval", "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "12", "--protocol", "div2k",
                 "--no-progress"]) == 1
    assert "img0 at scale 12" in capsys.readouterr().err


def test_library_errors(setup):
    model = load_checkpoint(setup["ckpt"])
    images = load_images(setup["hr"], limit=1)
    with pytest.raises(ValueError, match="no images"):
        evaluate(model, [], [2], progress=False)
    with pytest.raises(ValueError, match="3xHxW"):
        evaluate(model, [torch.rand(1, 3, 20, 20)], [2], progress=False)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(model, images, [2], "set14", progress=False)
    with pytest.raises(ValueError, match="unknown resize"):
        evaluate(model, images, [2], resize="lanczos", progress=False)
    with pytest.raises(ValueError, match="positive finite"):
        evaluate(model, images, [0], progress=False)
    with pytest.raises(ValueError, match="too small"):  # 45x38 at x12 (shave 18): nothing left
        evaluate(model, images, [12], "div2k", progress=False)


def test_eval_on_bundled_sample_photographs(tmp_path, capsys):
    from fastliif.evaluate import load_images
    images = load_images("samples:chelsea,camera")
    assert [n for n, _ in images] == ["chelsea", "camera"]
    assert images[0][1].shape == (3, 300, 451) and images[1][1].shape == (3, 512, 512)
    with pytest.raises(ValueError, match="unknown sample image"):
        load_images("samples:nope")


def test_plot_is_written(setup, capsys, tmp_path):
    png = tmp_path / "psnr.png"
    run_cli(capsys, "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2,3", "--plot", str(png))
    img = Image.open(png)
    assert img.format == "PNG" and img.width > 300 and img.height > 200


# ------------------------------------------------------------- defaults, missing packages, writes

def test_default_model_is_the_bundled_one(setup, capsys, tmp_path):
    from fastliif.evaluate import load_model_for_eval
    from fastliif.pretrained import DEFAULT_CHECKPOINT
    js = tmp_path / "r.json"
    out = run_cli(capsys, "--data", setup["hr"], "--scales", "2", "--limit", "1", "--json", str(js))
    assert out.startswith("bundled model on ")
    got = json.loads(js.read_text())["scales"][0]["psnr"]
    want = evaluate(load_model_for_eval(DEFAULT_CHECKPOINT), load_images(setup["hr"], limit=1), [2],
                    progress=False)["scales"][0]["psnr"]
    assert got == pytest.approx(want, abs=1e-9)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_without(tmp_path, package, *argv):
    """`fastliif eval ARGV` in a process where importing ``package`` fails, as when it is not installed."""
    import subprocess
    import sys
    fake = tmp_path / "fake" / package
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f'raise ImportError("No module named {package} (fake)")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), ROOT])}
    return subprocess.run([sys.executable, "-m", "fastliif", "eval", *argv, "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_plot_without_matplotlib_fails_before_any_work(setup, tmp_path):
    js = tmp_path / "r.json"
    proc = run_without(tmp_path, "matplotlib", "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2",
                       "--json", str(js), "--plot", str(tmp_path / "p.png"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "fastliif eval: error: --plot needs matplotlib (pip install matplotlib)"
    assert "| scale |" not in proc.stdout and not js.exists()  # nothing was evaluated


def test_samples_without_scikit_image_fail_before_any_work(setup, tmp_path):
    proc = run_without(tmp_path, "skimage", "--model", setup["ckpt"], "--data", "samples:chelsea,camera")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sample-images chelsea, camera needs scikit-image (pip install scikit-image)" in proc.stderr
    assert "| scale |" not in proc.stdout


def test_plot_must_be_a_png(setup, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--model", setup["ckpt"], "--data", setup["hr"], "--plot", str(tmp_path / "p.ico")])
    assert exc.value.code == 2 and "cannot write .ico images" in capsys.readouterr().err


def test_every_file_is_written_atomically(setup, capsys, tmp_path, monkeypatch):
    import errno
    import fastliif.atomic
    replaced = []
    real = fastliif.atomic.os.replace
    monkeypatch.setattr(fastliif.atomic.os, "replace", lambda src, dst: replaced.append(os.path.basename(dst))
                        or real(src, dst))
    js, png = tmp_path / "r.json", tmp_path / "p.png"
    run_cli(capsys, "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "2", "--json", str(js),
            "--plot", str(png), "--save-dir", str(tmp_path / "sr"))
    assert sorted(replaced) == ["img0.png", "img1.png", "img2.png", "p.png", "r.json"]
    # a full disk while rewriting the JSON leaves the old one whole, and is a message
    before = js.read_bytes()
    monkeypatch.setattr(fastliif.atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert main(["eval", "--model", setup["ckpt"], "--data", setup["hr"], "--scales", "3", "--json", str(js),
                 "--no-progress"]) == 2
    assert "disk full while writing" in capsys.readouterr().err
    assert js.read_bytes() == before
