"""crop_to_patches (PNG and HDF5 routes), the hdf5-patches dataset and `fastliif prepare-patches`."""
import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from fastliif.cli import main
from fastliif.data import make
from fastliif.data.io import load_image
from fastliif.data.patches import crop_to_patches, tile_starts

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
    with pytest.warns(UserWarning):
        assert main(args) == 0                                   # format inferred from .h5
    n = len(_expected(src, CROP, STEP, None))
    assert f"wrote {n} patches to {h5} (hdf5)" in capsys.readouterr().out
    with h5py.File(h5, "r") as f:
        assert f["patches"].shape[0] == n
    assert main(args) == 2                                       # exists, no --overwrite
    assert "exists (pass overwrite=True / --overwrite)" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        assert main(args + ["--overwrite", "--thresh-size", "0"]) == 0
    assert f"wrote {len(_expected(src, CROP, STEP, 0))} patches" in capsys.readouterr().out
    out = str(tmp_path / "cli_png")
    with pytest.warns(UserWarning):
        assert main(["prepare-patches", str(src), out, "--crop-size", "20", "--step", "15", "--format", "png",
                     "--no-progress"]) == 0
    assert len(os.listdir(out)) == len(_expected(src, 20, 15, None))
    assert main(["prepare-patches", str(tmp_path / "missing"), out, "--no-progress"]) == 2
    assert "source folder not found" in capsys.readouterr().err
    assert main(["prepare-patches", str(src), out, "--compression", "lzf", "--no-progress"]) == 2
    assert "--compression applies to --format hdf5 only" in capsys.readouterr().err


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
