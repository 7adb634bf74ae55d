"""crop_to_patches (PNG and HDF5 routes), the hdf5-patches dataset and `fastliif prepare-patches`."""
import errno
import os
import pickle
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from fastliif.cli import main
from fastliif.data import make
from fastliif.data.io import load_image
from fastliif.atomic import DiskFullError
from fastliif.data import patches
from fastliif.data.patches import crop_to_patches, patch_stems, tile_starts

SIZES = {"a.png": (37, 50), "b.png": (40, 40), "c.jpg": (26, 33)}   # name -> (h, w)
CROP, STEP = 16, 10


def _starts_by_hand(length, crop, step, thresh):
    # every multiple of step whose tile fits; then (BasicSR) one border-flush tile if the leftover
    # strip is wider than thresh
    s = [i for i in range(0, length, step) if i + crop <= length]
    if thresh is not None and s and length - s[-1] - crop > thresh:
        s.append(length - crop)
    return s


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name, quality=95)
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), mode="L").save(root / "d_gray.png")
    Image.fromarray(rng.integers(0, 256, (8, 30, 3), dtype=np.uint8)).save(root / "e_small.png")  # < crop
    (root / "notes.txt").write_text("not an image")
    return root


def _expected(src_dir, crop, step, thresh):
    out = {}
    for name in sorted(os.listdir(src_dir)):
        if name.endswith(".txt"):
            continue
        arr = np.asarray(Image.open(src_dir / name).convert("RGB"))
        ys = _starts_by_hand(arr.shape[0], crop, step, thresh)
        xs = _starts_by_hand(arr.shape[1], crop, step, thresh)
        k = 0
        for y in ys:
            for x in xs:
                k += 1
                out[f"{os.path.splitext(name)[0]}_s{k:03d}"] = arr[y:y + crop, x:x + crop]
    return out


@pytest.mark.parametrize("length,crop,step,thresh", [
    (1356, 480, 200, None), (1356, 480, 240, 0), (2040, 480, 200, None), (480, 480, 200, None),
    (479, 480, 200, 0), (37, 16, 10, 0), (37, 16, 10, 5), (36, 16, 10, 0), (50, 16, 7, 3),
])
def test_tile_starts(length, crop, step, thresh):
    assert tile_starts(length, crop, step, thresh) == _starts_by_hand(length, crop, step, thresh)


def test_seed_recipe_count_per_div2k_image():
    # seed 003: 480 tiles every 200 px, no border tiles; a 2040x1356 DIV2K image gives 8 x 5 = 40,
    # consistent with its ~32k tiles from 800 images.
    assert len(tile_starts(2040, 480, 200)) * len(tile_starts(1356, 480, 200)) == 40


@pytest.mark.parametrize("thresh", [None, 0])
def test_png_route(src, tmp_path, thresh):
    out = tmp_path / "png"
    with pytest.warns(UserWarning, match="e_small.png: 30x8 is smaller than crop_size 16"):
        n = crop_to_patches(str(src), str(out), crop_size=CROP, step=STEP, thresh_size=thresh, progress=False)
    expect = _expected(src, CROP, STEP, thresh)
    assert n == len(expect) == len(os.listdir(out))
    assert sorted(os.listdir(out)) == sorted(f"{k}.png" for k in expect)
    for stem, patch in expect.items():
        got = np.asarray(Image.open(out / f"{stem}.png"))
        assert got.shape == (CROP, CROP, 3) and np.array_equal(got, patch)


def test_hdf5_round_trip_equals_png_route(src, tmp_path, capsys):
    with pytest.warns(UserWarning):
        n_png = crop_to_patches(str(src), str(tmp_path / "png"), crop_size=CROP, step=STEP, thresh_size=0,
                                progress=False)
    h5 = str(tmp_path / "p.h5")
    with pytest.warns(UserWarning):
        n = crop_to_patches(str(src), h5, crop_size=CROP, step=STEP, thresh_size=0, fmt="hdf5",
                            compression="lzf", progress=True)
    assert "prepare-patches" in capsys.readouterr().err          # tqdm bar
    assert n == n_png
    with h5py.File(h5, "r") as f:
        assert f["patches"].shape == (n, 3, CROP, CROP) and f["patches"].dtype == np.uint8
        names = [s.decode() for s in f["names"][()]]
        assert dict(f.attrs) == {"crop_size": CROP, "step": STEP, "thresh_size": 0}
    assert names == sorted(names, key=lambda s: (s.rsplit("_s", 1)[0], int(s.rsplit("_s", 1)[1])))
    ds = make({"name": "hdf5-patches", "args": {"path": h5}})
    assert len(ds) == n and ds.names == names
    for i, stem in enumerate(names):
        x = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, CROP, CROP)
        assert torch.equal(x, load_image(str(tmp_path / "png" / f"{stem}.png")))


def test_hdf5_dataset_options_workers_and_pickle(src, tmp_path):
    h5 = str(tmp_path / "p.h5")
    with pytest.warns(UserWarning):
        n = crop_to_patches(str(src), h5, crop_size=CROP, step=STEP, fmt="hdf5", progress=False)
    ds = make({"name": "hdf5-patches", "args": {"path": h5, "repeat": 3, "first_k": 5}})
    assert len(ds) == 15 and torch.equal(ds[12], ds[2])
    full = make({"name": "hdf5-patches", "args": {"path": h5, "cache": "in_memory"}})
    assert len(full) == n
    full[0]                                                      # opens the file in this process
    clone = pickle.loads(pickle.dumps(full))                     # what a spawned worker receives
    assert clone._file is None and torch.equal(clone[n - 1], full[n - 1])
    loader = torch.utils.data.DataLoader(make({"name": "hdf5-patches", "args": {"path": h5}}),
                                         batch_size=n, num_workers=2)
    batch = torch.cat(list(loader))
    assert torch.equal(batch, torch.stack([full[i] for i in range(n)]))
    # the fixed-scale wrapper takes the patches as HR images
    sr = make({"name": "sr-downsampled", "args": {"scale": 2, "inp_size": 4, "augment": True}},
              args={"dataset": full})
    item = sr[3]
    assert item["inp"].shape == (3, 4, 4) and item["gt"].shape == (3, 8, 8)


def test_cli_prepare_patches(src, tmp_path, capsys):
    h5 = str(tmp_path / "cli.h5")
    args = ["prepare-patches", str(src), h5, "--crop-size", str(CROP), "--step", str(STEP), "--no-progress"]
    small = f"fastliif prepare-patches: warning: {src / 'e_small.png'}: 30x8 is smaller than crop_size 16; skipped\n"
    assert main(args) == 0                                       # format inferred from .h5
    n = len(_expected(src, CROP, STEP, None))
    out, err = capsys.readouterr()
    assert f"wrote {n} patches to {h5} (hdf5)" in out and err == small  # the warning: one line
    with h5py.File(h5, "r") as f:
        assert f["patches"].shape[0] == n
    assert main(args) == 2                                       # exists, no --overwrite
    assert "exists (pass overwrite=True / --overwrite)" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--thresh-size", "0"]) == 0
    assert f"wrote {len(_expected(src, CROP, STEP, 0))} patches" in capsys.readouterr().out
    out = str(tmp_path / "cli_png")
    assert main(["prepare-patches", str(src), out, "--crop-size", "20", "--step", "15", "--format", "png",
                 "--no-progress"]) == 0
    assert len(os.listdir(out)) == len(_expected(src, 20, 15, None))
    capsys.readouterr()
    for argv, msg in [([str(tmp_path / "missing"), out], "source folder not found"),
                      ([str(src), out, "--compression", "lzf"], "--compression applies to --format hdf5 only")]:
        assert main(["prepare-patches", *argv, "--no-progress"]) == 2
        out_, err = capsys.readouterr()
        assert err.startswith("fastliif prepare-patches: error: ") and msg in err and err.count("\n") == 1


def _rgb(path, h, w, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95)
    return np.asarray(Image.open(path).convert("RGB"))


def _tiles(arr, crop=CROP, step=STEP):
    return [arr[y:y + crop, x:x + crop] for y in _starts_by_hand(arr.shape[0], crop, step, None)
            for x in _starts_by_hand(arr.shape[1], crop, step, None)]


@pytest.mark.parametrize("fmt", ["png", "hdf5"])
def test_same_stem_different_extension_do_not_collide(tmp_path, fmt):
    # Was: x.png and x.jpg both wrote x_s001.png ...: 18 patches reported, 9 on disk.
    src = tmp_path / "src"
    src.mkdir()
    arrs = {"x.png": _rgb(src / "x.png", 36, 36, 1), "x.jpg": _rgb(src / "x.jpg", 36, 36, 2),
            "y.png": _rgb(src / "y.png", 26, 26, 3)}
    out = tmp_path / ("p.h5" if fmt == "hdf5" else "p")
    n = crop_to_patches(str(src), str(out), crop_size=CROP, step=STEP, fmt=fmt, progress=False)
    expect = {f"{stem}_s{k:03d}": t for name, stem in (("x.png", "x.png"), ("x.jpg", "x.jpg"), ("y.png", "y"))
              for k, t in enumerate(_tiles(arrs[name]), 1)}
    assert n == len(expect) == 9 + 9 + 4
    if fmt == "png":
        assert sorted(os.listdir(out)) == sorted(f"{stem}.png" for stem in expect)
        got = {f[:-4]: np.asarray(Image.open(out / f)) for f in os.listdir(out)}
    else:
        ds = make({"name": "hdf5-patches", "args": {"path": str(out)}})
        got = {name: (ds[i] * 255).round().byte().permute(1, 2, 0).numpy() for i, name in enumerate(ds.names)}
    assert got.keys() == expect.keys()
    for stem, tile in expect.items():
        assert np.array_equal(got[stem], tile), stem


def test_patch_stems():
    assert patch_stems(["a.png", "b.jpg"]) == ["a", "b"]
    assert patch_stems(["X.png", "x.jpg", "y.png"]) == ["X.png", "x.jpg", "y"]  # case-insensitive filesystems
    sep = os.sep
    assert patch_stems([f"a{sep}x.png", f"b{sep}x.png", "x.png"]) == ["a__x", "b__x", "x"]
    with pytest.raises(ValueError, match="x.png, x.png.bmp would write patches of the same name"):
        patch_stems(["x.jpg", "x.png", "x.png.bmp"])


def test_nested_folders_are_recursed_and_the_output_is_not_read_back(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "a" / "deep").mkdir(parents=True)
    (src / "b").mkdir()
    arrs = {"a__deep__x": _rgb(src / "a" / "deep" / "x.png", 26, 26, 1), "b__x": _rgb(src / "b" / "x.png", 26, 26, 2),
            "x": _rgb(src / "x.png", 26, 26, 3)}
    out = src / "patches"                                        # output inside the source folder
    for extra in ([], ["--overwrite"]):
        assert main(["prepare-patches", str(src), str(out), "--crop-size", str(CROP), "--step", str(STEP),
                     "--no-progress", *extra]) == 0
        assert "wrote 12 patches" in capsys.readouterr().out       # the second run does not cut patches of patches
    assert sorted(os.listdir(out)) == sorted(f"{s}_s{k:03d}.png" for s in arrs for k in range(1, 5))
    for stem, arr in arrs.items():
        for k, tile in enumerate(_tiles(arr), 1):
            assert np.array_equal(np.asarray(Image.open(out / f"{stem}_s{k:03d}.png")), tile)


def test_corrupt_image_is_skipped_with_a_warning(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    good = _rgb(src / "good.png", 26, 26, 0)
    _rgb(src / "trunc.jpg", 64, 64, 1)
    data = (src / "trunc.jpg").read_bytes()
    (src / "trunc.jpg").write_bytes(data[:len(data) // 2])        # a download cut in the middle
    (src / "junk.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "p"
    assert main(["prepare-patches", str(src), str(out), "--crop-size", str(CROP), "--step", str(STEP),
                 "--no-progress"]) == 0
    stdout, err = capsys.readouterr()
    assert "wrote 4 patches" in stdout
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("fastliif prepare-patches: warning: ") for line in lines)
    assert "junk.png: not a readable image" in lines[0] and "skipped" in lines[0]
    assert "trunc.jpg: not a readable image" in lines[1]
    assert sorted(os.listdir(out)) == [f"good_s{k:03d}.png" for k in range(1, 5)]
    assert np.array_equal(np.asarray(Image.open(out / "good_s004.png")), _tiles(good)[3])


def test_hdf5_without_h5py_fails_before_any_work(src, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "h5py", None)               # import h5py now raises ImportError
    out = tmp_path / "new" / "p.h5"
    with pytest.raises(ImportError, match=r"HDF5 patches need the h5py package \(pip install h5py\)"):
        crop_to_patches(str(src), str(out), crop_size=CROP, step=STEP, fmt="hdf5", progress=False)
    assert main(["prepare-patches", str(src), str(out), "--crop-size", str(CROP), "--no-progress"]) == 2
    stdout, err = capsys.readouterr()
    assert stdout == "" and err.count("\n") == 1
    assert err.startswith("fastliif prepare-patches: error: HDF5 patches need the h5py package")
    assert not (tmp_path / "new").exists()                       # nothing made, nothing read
    assert main(["prepare-patches", str(src), str(tmp_path / "png"), "--crop-size", str(CROP), "--step", str(STEP),
                 "--no-progress"]) == 0                          # PNG patches need no h5py


def test_failed_write_leaves_no_partial_image_and_old_hdf5_intact(src, tmp_path, monkeypatch, capsys):
    real, calls = patches.save_image, []

    def disk_fills(img, path, **kw):                             # the 7th patch hits a full disk
        calls.append(path)
        if len(calls) == 7:
            raise DiskFullError(errno.ENOSPC, f"disk full while writing {path}")
        return real(img, path, **kw)
    monkeypatch.setattr(patches, "save_image", disk_fills)
    out = tmp_path / "p"
    assert main(["prepare-patches", str(src), str(out), "--crop-size", str(CROP), "--step", str(STEP),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastliif prepare-patches: error: ") and "disk full while writing" in err
    # a.png (37x50: 2x4 = 8 tiles) failed at its 7th patch: none of its patches stay
    assert os.listdir(out) == [] and len(calls) == 7

    h5 = tmp_path / "p.h5"
    with pytest.warns(UserWarning, match="e_small.png"):
        crop_to_patches(str(src), str(h5), crop_size=CROP, step=STEP, fmt="hdf5", progress=False)
    old = h5.read_bytes()
    real_patches = patches._patches_of

    def interrupted(path, *a):
        if path.endswith("c.jpg"):
            raise KeyboardInterrupt
        return real_patches(path, *a)
    monkeypatch.setattr(patches, "_patches_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        crop_to_patches(str(src), str(h5), crop_size=24, step=5, fmt="hdf5", progress=False, overwrite=True)
    assert h5.read_bytes() == old and sorted(os.listdir(tmp_path)) == ["p", "p.h5"]


def test_errors(src, tmp_path):
    out = str(tmp_path / "o")
    for kw, msg in [({"crop_size": 0}, "crop_size must be an integer >= 1"),
                    ({"step": 2.5}, "step must be an integer >= 1"),
                    ({"thresh_size": -1}, "thresh_size must be an integer >= 0"),
                    ({"fmt": "lmdb"}, "fmt must be one of")]:
        with pytest.raises(ValueError, match=msg):
            crop_to_patches(str(src), out, progress=False, **kw)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        crop_to_patches(str(empty), out, progress=False)
    with pytest.raises(FileExistsError, match="is a folder; the HDF5 route writes one file"):
        crop_to_patches(str(src), str(empty), fmt="hdf5", progress=False)
    with pytest.raises(FileNotFoundError, match="HDF5 patch file not found"):
        make({"name": "hdf5-patches", "args": {"path": str(tmp_path / "none.h5")}})
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        make({"name": "hdf5-patches", "args": {"path": str(bogus)}})
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="no 'patches' dataset"):
        make({"name": "hdf5-patches", "args": {"path": str(tmp_path / "other.h5")}})


def test_hdf5_that_cannot_fit_is_refused_before_writing(src, tmp_path, monkeypatch, capsys):
    # h5py crashes (segfault) closing a file whose disk filled up mid-write: check the room first.
    h5 = tmp_path / "p.h5"
    with pytest.warns(UserWarning):
        n = crop_to_patches(str(src), str(h5), crop_size=CROP, step=STEP, fmt="hdf5", progress=False)
    old = h5.read_bytes()
    need = n * (3 * CROP * CROP + 256) + (64 << 10)

    class Tight:
        f_frsize, f_bavail = 1, need - 1
    monkeypatch.setattr(os, "statvfs", lambda path: Tight)
    assert main(["prepare-patches", str(src), str(h5), "--crop-size", str(CROP), "--step", str(STEP),
                 "--no-progress", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err == (f"fastliif prepare-patches: error: [Errno 28] disk full: {h5} needs about {need / 2**20:.1f} MiB "
                   f"for {n} patches, {(need - 1) / 2**20:.1f} MiB free\n")
    assert h5.read_bytes() == old and os.listdir(tmp_path) == ["p.h5"]
    Tight.f_bavail = need                                        # just enough: written
    with pytest.warns(UserWarning):
        assert crop_to_patches(str(src), str(h5), crop_size=CROP, step=STEP, fmt="hdf5", progress=False,
                               overwrite=True) == n
