"""scripts/get_photos.py: licence bookkeeping, the x1/2 preparation and the manifest, offline on
tiny synthetic packages (no apt, no dpkg)."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastliif.data.io import load_image
from fastliif.data.resize import resize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("get_photos", os.path.join(ROOT, "scripts", "get_photos.py"))
gp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gp)

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lomiri-wallpapers

Files: *
Copyright: 2018 Someone
License: Expat

Files: 16.04/lake_by_A.jpg
Copyright: A. Person,
  2018
License: CC-BY-4.0

Files: 16.04/hill_by_B.jpg
Copyright: B, 2019
License: CC0-1.0
 To the extent possible under law ...

License: Expat
 Permission is hereby granted ...
"""


def _jpeg(path, h, w, seed):
    rng = np.random.default_rng(seed)
    # smooth random field plus noise: a photograph-like JPEG with odd sizes
    base = rng.random((h // 8 + 2, w // 8 + 2, 3))
    img = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float64)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def _packages(tmp_path):
    lomiri = tmp_path / "lomiri"
    doc = lomiri / "usr/share/doc/lomiri-wallpapers-16.04"
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(COPYRIGHT)
    _jpeg(str(lomiri / gp.LOMIRI_DIR / "lake_by_A.jpg"), 61, 83, 1)
    _jpeg(str(lomiri / gp.LOMIRI_DIR / "hill_by_B.jpg"), 40, 50, 2)
    plasma = tmp_path / "plasma"
    wall = plasma / gp.PLASMA_DIR / "Sky"
    _jpeg(str(wall / "contents/images/64x40.jpg"), 40, 64, 3)
    _jpeg(str(wall / "contents/images/32x20.jpg"), 20, 32, 4)
    (wall / "metadata.json").write_text(json.dumps({"KPlugin": {"Authors": [{"Name": "C"}], "License": "LGPLv3"}}))
    roots = {"lomiri-wallpapers-16.04": (str(lomiri), "1.0-1"), "plasma-workspace-wallpapers": (str(plasma), "4:5-2")}
    photos = {"lomiri-wallpapers-16.04": ["lake_by_A", "hill_by_B"], "plasma-workspace-wallpapers": ["Sky"]}
    return roots, photos


def test_dep5_licences_per_file_with_wildcard_fallback():
    entries = gp.parse_dep5(COPYRIGHT)
    assert gp.dep5_licence(entries, "lake_by_A.jpg") == ("A. Person, 2018", "CC-BY-4.0")
    assert gp.dep5_licence(entries, "hill_by_B.jpg") == ("B, 2019", "CC0-1.0")
    assert gp.dep5_licence(entries, "other.jpg") == ("2018 Someone", "Expat")
    no_wildcard = {k: v for k, v in entries.items() if k != "*"}
    with pytest.raises(gp.PrepareError, match="other.jpg"):
        gp.dep5_licence(no_wildcard, "other.jpg")


def test_halve_is_exact_matlab_half_of_the_even_crop():
    x = torch.rand(3, 37, 52, generator=torch.Generator().manual_seed(0))
    out = gp.halve(x)
    assert out.shape == (3, 18, 26)
    torch.testing.assert_close(out, resize(x[:, :36, :52], (18, 26), "matlab"))
    # antialiased: a pixel-level checkerboard (all energy at Nyquist) is removed, not aliased
    checker = ((torch.arange(40)[:, None] + torch.arange(40)[None]) % 2).float().expand(3, -1, -1)
    assert gp.halve(checker).std() < 0.02


def test_prepare_writes_images_manifest_and_crops(tmp_path):
    roots, photos = _packages(tmp_path)
    out = tmp_path / "out"
    manifest = gp.prepare(roots, str(out), skimage_names=(), log=lambda *a: None, photos=photos,
                          holdout=("hill_by_B",), crops=[("hill_by_B", "sky", 3, 2)], crop_size=8)
    by_file = {f["file"]: f for f in manifest["files"]}
    assert set(by_file) == {"train/lake_by_A.png", "val/hill_by_B.png", "train/Sky.png", "val_crops/hill_by_B-sky.png"}
    lake = by_file["train/lake_by_A.png"]
    assert (lake["licence"], lake["author"], lake["source"]) == ("CC-BY-4.0", "A. Person, 2018", "lomiri-wallpapers-16.04 1.0-1")
    assert lake["original_size"] == [61, 83] and lake["size"] == [30, 41] and lake["split"] == "train"
    sky = by_file["train/Sky.png"]
    assert sky["licence"] == "LGPLv3" and sky["author"] == "C" and sky["original_size"] == [40, 64]  # largest rendition
    assert by_file["val/hill_by_B.png"]["split"] == "val"
    # the HR PNG is the MATLAB-style half of the JPEG, rounded once to 8 bits
    src = load_image(str(tmp_path / "lomiri" / gp.LOMIRI_DIR / "lake_by_A.jpg"))
    expect = (resize(src[:, :60, :82], (30, 41), "matlab").clamp(0, 1) * 255).round()
    got = load_image(str(out / "train/lake_by_A.png")) * 255
    assert torch.equal(got.round(), expect)
    # the crop is the held-out HR image's region, with its parent's licence
    crop = load_image(str(out / "val_crops/hill_by_B-sky.png"))
    hr = load_image(str(out / "val/hill_by_B.png"))
    assert torch.equal(crop, hr[:, 2:10, 3:11])
    c = by_file["val_crops/hill_by_B-sky.png"]
    assert c["crop"] == {"left": 3, "top": 2, "kind": "sky", "smooth": True} and c["licence"] == "CC0-1.0"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["packages"] == {"lomiri-wallpapers-16.04": "1.0-1", "plasma-workspace-wallpapers": "4:5-2"}
    assert on_disk["megapixels"]["train"] == round((30 * 41 + 20 * 32) / 1e6, 2)
    assert on_disk["megapixels"]["val_crops"] == round(64 / 1e6, 2)


def test_prepare_names_a_missing_photo_and_a_crop_outside(tmp_path):
    roots, photos = _packages(tmp_path)
    photos = {**photos, "lomiri-wallpapers-16.04": ["lake_by_A", "gone_by_C"]}
    with pytest.raises(gp.PrepareError, match="gone_by_C.jpg is missing"):
        gp.prepare(roots, str(tmp_path / "a"), skimage_names=(), log=lambda *a: None, photos=photos, crops=[])
    roots, photos = _packages(tmp_path)
    with pytest.raises(gp.PrepareError, match="falls outside"):
        gp.prepare(roots, str(tmp_path / "b"), skimage_names=(), log=lambda *a: None, photos=photos,
                   holdout=("Sky",), crops=[("Sky", "sky", 0, 0)])


def test_main_missing_deb_is_a_one_line_error(tmp_path, capsys):
    assert gp.main([str(tmp_path / "out"), "--deb", str(tmp_path / "nope.deb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("get_photos: package file not found") and "\n" not in err


def test_shell_wrapper_parses_and_names_the_packages():
    import subprocess
    script = os.path.join(ROOT, "scripts", "get_photos.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    text = open(script).read()
    for package in gp.PHOTOS:  # the wrapper downloads exactly the packages the preparation knows
        assert package in text


def test_test_set_package_goes_to_test_with_its_dep5_licence(tmp_path):
    """mate-backgrounds' photographs are the held-apart test set: split test/, never train/val."""
    mate = tmp_path / "mate"
    doc = mate / "usr/share/doc/mate-backgrounds"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT.replace("16.04/lake_by_A.jpg", "nature/Lake.jpg"))
    _jpeg(str(mate / gp.MATE_DIR / "Lake.jpg"), 44, 58, 5)
    out = tmp_path / "out"
    manifest = gp.prepare({"mate-backgrounds": (str(mate), "1.26.0-1")}, str(out), skimage_names=(),
                          log=lambda *a: None, photos={"mate-backgrounds": ["Lake"]}, holdout=("Lake",), crops=[])
    (entry,) = manifest["files"]
    assert entry["file"] == "test/Lake.png" and entry["split"] == "test"  # holdout does not pull it into val
    assert (entry["licence"], entry["member"]) == ("CC-BY-4.0", os.path.join(gp.MATE_DIR, "Lake.jpg"))
    assert entry["size"] == [22, 29] and (out / "test/Lake.png").is_file()
    assert manifest["megapixels"]["test"] == round(22 * 29 / 1e6, 2)
    assert "mate-backgrounds" in gp.TEST_PACKAGES
