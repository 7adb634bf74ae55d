"""scripts/make_smooth_photos.py: stage 2's training folder = the photographs (linked, unchanged)
plus blurred copies of every second one; the blur keeps flat levels and ramps exact."""
import importlib.util
import os

import torch

from fastliif.data.io import load_image, save_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("make_smooth_photos",
                                               os.path.join(ROOT, "scripts", "make_smooth_photos.py"))
smooth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smooth)


def test_blur_keeps_levels_and_ramps_and_removes_noise():
    torch.manual_seed(0)
    flat = torch.full((3, 40, 50), 0.3) + torch.tensor([0.0, 0.2, 0.4]).view(3, 1, 1)
    assert torch.allclose(smooth.gaussian_blur(flat, 4.0), flat, atol=1e-6)
    # a linear ramp is kept away from the reflected borders (a symmetric kernel of unit sum)
    ramp = torch.linspace(0.1, 0.9, 60).view(1, 1, 60).expand(3, 40, 60).contiguous()
    out = smooth.gaussian_blur(ramp, 2.0)
    assert torch.allclose(out[:, :, 8:-8], ramp[:, :, 8:-8], atol=1e-5)
    noisy = (0.5 + 0.1 * torch.randn(3, 64, 64)).clamp(0, 1)
    assert smooth.gaussian_blur(noisy, 2.0).std() < 0.25 * noisy.std()


def test_folder_links_originals_and_blurs_every_second(tmp_path):
    src, dst = tmp_path / "train", tmp_path / "train_smooth"
    src.mkdir()
    torch.manual_seed(1)
    for i in range(4):
        save_image(torch.rand(3, 30, 36), str(src / f"p{i}.png"))
    (src / "notes.txt").write_text("not an image")
    assert smooth.main([str(src), str(dst)]) == 0
    names = sorted(os.listdir(dst))
    assert names == ["p0-blur2.png", "p0.png", "p1.png", "p2-blur4.png", "p2.png", "p3.png"]
    for i in range(4):
        assert torch.equal(load_image(str(dst / f"p{i}.png")), load_image(str(src / f"p{i}.png")))
    blurred = load_image(str(dst / "p2-blur4.png"))
    assert blurred.shape == (3, 30, 36)
    expected = smooth.gaussian_blur(load_image(str(src / "p2.png")), 4.0)
    assert (blurred - expected).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    assert smooth.main([str(src), str(dst)]) == 0  # a rerun keeps what is there
    assert sorted(os.listdir(dst)) == names


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert smooth.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err
    (tmp_path / "empty").mkdir()
    assert smooth.main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no images" in capsys.readouterr().err
