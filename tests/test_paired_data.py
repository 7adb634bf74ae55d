"""paired-image-folders, sr-paired and sr-downsampled (fastliif.data.paired) on tiny synthetic images."""
import os

import pytest
import torch

from fastliif.data import make
from fastliif.data.imresize import imresize
from fastliif.data.io import load_image, save_image
from fastliif.data.resize import resize


def _rand(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _dihedral(x):
    """The 8 flips/transposes of a CxHxW tensor."""
    out = []
    for t in (x, x.transpose(-2, -1)):
        for f in (t, t.flip(-1), t.flip(-2), t.flip(-2).flip(-1)):
            out.append(f)
    return out


class _Pairs(torch.utils.data.Dataset):
    """In-memory (lr, hr) pairs: hr random, lr = imresize(hr, 1/s) (float, no file rounding)."""

    def __init__(self, n=3, s=2, h=9, w=11, seed=0, as_dict=False, nearest=False):
        self.items = []
        for k in range(n):
            if nearest:
                # hr is lr upsampled by pixel repetition: every s-th hr pixel is exactly the lr pixel
                lr = _rand(3, h, w, seed=seed + k)
                hr = lr.repeat_interleave(s, -2).repeat_interleave(s, -1)
            else:
                hr = _rand(3, h * s, w * s, seed=seed + k)
                lr = imresize(hr, 1 / s)
            self.items.append({"inp": lr, "gt": hr} if as_dict else (lr, hr))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """LR (x2, MATLAB bicubic, named 000Kx2.png) and HR (000K.png) folders of 3 images, 20x24 HR."""
    root = tmp_path_factory.mktemp("pairs")
    for k in range(3):
        hr = _rand(3, 20, 24, seed=100 + k)
        save_image(hr, str(root / "hr" / f"{k:04d}.png"))
        save_image(resize(hr, (10, 12)).clamp(0, 1), str(root / "lr" / f"{k:04d}x2.png"))
    return root


# ---- paired-image-folders --------------------------------------------------------------------

def test_paired_folders_items_and_options(folders):
    spec = {"name": "paired-image-folders",
            "args": {"root_path_1": str(folders / "lr"), "root_path_2": str(folders / "hr")}}
    ds = make(spec)
    assert len(ds) == 3
    for k in range(3):
        lr, hr = ds[k]
        assert torch.equal(lr, load_image(str(folders / "lr" / f"{k:04d}x2.png")))
        assert torch.equal(hr, load_image(str(folders / "hr" / f"{k:04d}.png")))
        assert lr.dtype == torch.float32 and 0 <= lr.min() and lr.max() <= 1
    rep = make(spec, args={"repeat": 2, "first_k": 2, "cache": "in_memory"})
    assert len(rep) == 4
    assert torch.equal(rep[3][1], ds[1][1]) and rep[1][0] is rep[3][0]   # cached object reused


def test_paired_folders_errors(folders, tmp_path):
    lr, hr = str(folders / "lr"), str(folders / "hr")
    other = tmp_path / "other"
    for k in range(3):
        save_image(_rand(3, 10, 12, seed=k), str(other / f"img{k}.png"))
    with pytest.raises(ValueError, match=r"do not match: img0\.png \(LR\) is paired with 0000\.png"):
        make({"name": "paired-image-folders", "args": {"root_path_1": str(other), "root_path_2": hr}})
    # check_names=False pairs by sorted order
    ds = make({"name": "paired-image-folders",
               "args": {"root_path_1": str(other), "root_path_2": hr, "check_names": False}})
    assert ds[2][0].shape == (3, 10, 12)
    os.remove(other / "img2.png")
    with pytest.raises(ValueError, match=r"differ in size: 2 images in .* \(LR\), 3 in"):
        make({"name": "paired-image-folders",
              "args": {"root_path_1": str(other), "root_path_2": hr, "check_names": False}})
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        make({"name": "paired-image-folders", "args": {"root_path_1": str(tmp_path / "nope"), "root_path_2": hr}})
    with pytest.raises(ValueError, match="cache must be one of"):
        make({"name": "paired-image-folders", "args": {"root_path_1": lr, "root_path_2": hr, "cache": "disk"}})


# ---- sr-paired -----------------------------------------------------------------------------------

def _sr_paired(pairs, **args):
    return make({"name": "sr-paired", "args": args}, args={"dataset": pairs})


@pytest.mark.parametrize("s", [2, 3])
def test_sr_paired_crops_are_aligned(s):
    pairs = _Pairs(s=s, nearest=True, seed=s)
    ds = _sr_paired(pairs, inp_size=4)
    torch.manual_seed(0)
    for i in range(len(ds)):
        for _ in range(5):
            item = ds[i]
            assert item["inp"].shape == (3, 4, 4) and item["gt"].shape == (3, 4 * s, 4 * s)
            assert torch.equal(item["gt"][:, ::s, ::s], item["inp"])


def test_sr_paired_lr_crop_matches_resized_hr_crop_interior():
    # Resizing the HR crop sees mirrored borders where the full-image LR saw real neighbours, so
    # they agree away from the crop edge (x2 antialiased kernel reaches 2 LR pixels).
    ds = _sr_paired(_Pairs(s=2, h=12, w=14, seed=3), inp_size=8)
    torch.manual_seed(1)
    for _ in range(4):
        item = ds[1]
        mine = imresize(item["gt"], 0.5)
        assert torch.allclose(mine[:, 2:-2, 2:-2], item["inp"][:, 2:-2, 2:-2], atol=1e-5)


def test_sr_paired_augment_is_the_same_dihedral_map_on_both():
    pairs = _Pairs(s=2, nearest=True, seed=7)
    plain, aug = _sr_paired(pairs, inp_size=5), _sr_paired(pairs, inp_size=5, augment=True)
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        a = plain[0]
        torch.manual_seed(seed)   # same crop position, then the flips are drawn
        b = aug[0]
        assert torch.equal(b["gt"][:, ::2, ::2], b["inp"])
        k_inp = [k for k, t in enumerate(_dihedral(a["inp"])) if torch.equal(t, b["inp"])]
        k_gt = [k for k, t in enumerate(_dihedral(a["gt"])) if torch.equal(t, b["gt"])]
        assert k_inp and k_gt and k_inp[0] == k_gt[0]
        seen.add(k_gt[0])
    assert len(seen) == 8


def test_sr_paired_whole_image_and_dict_items_and_determinism():
    pairs = _Pairs(s=3, h=5, w=7, seed=11, as_dict=True)
    pairs.items[0]["gt"] = torch.cat([pairs.items[0]["gt"], _rand(3, 2, 21, seed=1)], dim=1)  # 17x21 HR
    ds = _sr_paired(pairs)
    item = ds[0]
    assert torch.equal(item["inp"], pairs.items[0]["inp"])
    assert torch.equal(item["gt"], pairs.items[0]["gt"][:, :15, :21])
    crops = _sr_paired(pairs, inp_size=3, augment=True)
    torch.manual_seed(5)
    first = [crops[i] for i in range(3)]
    torch.manual_seed(5)
    again = [crops[i] for i in range(3)]
    assert all(torch.equal(a["gt"], b["gt"]) and torch.equal(a["inp"], b["inp"]) for a, b in zip(first, again))


def test_sr_paired_with_folders_and_dataloader(folders):
    inner = {"name": "paired-image-folders",
             "args": {"root_path_1": str(folders / "lr"), "root_path_2": str(folders / "hr"), "repeat": 2}}
    ds = make({"name": "sr-paired", "args": {"inp_size": 6, "augment": True}}, args={"dataset": make(inner)})
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)))
    assert batch["inp"].shape == (4, 3, 6, 6) and batch["gt"].shape == (4, 3, 12, 12)


def test_sr_paired_errors():
    with pytest.raises(ValueError, match="smaller than inp_size 10"):
        _sr_paired(_Pairs(s=2), inp_size=10)[0]
    bad = _Pairs(n=1, s=2)
    bad.items[0] = (bad.items[0][0], _rand(3, 18, 33, seed=0))          # 18/9 = 2 but 33/11 = 3
    with pytest.raises(ValueError, match="not an integer multiple"):
        _sr_paired(bad)[0]
    bad.items[0] = (bad.items[0][0][:1], _rand(3, 18, 22, seed=0))
    with pytest.raises(ValueError, match="differ in channels"):
        _sr_paired(bad)[0]
    bad.items[0] = (_rand(3, 9, 11, seed=0), _rand(3, 18, 22, seed=0))
    with pytest.raises(ValueError, match=r"smaller than 3 x LR"):
        _sr_paired(bad, scale=3)[0]
    for v in (0, 2.5, "4"):
        with pytest.raises(ValueError, match="inp_size must be a positive integer"):
            _sr_paired(bad, inp_size=v)


# ---- sr-downsampled ------------------------------------------------------------------------------

def _hr_folder(tmp_path, n=2, h=30, w=26):
    for k in range(n):
        save_image(_rand(3, h, w, seed=200 + k), str(tmp_path / f"{k}.png"))
    return make({"name": "image-folder", "args": {"root_path": str(tmp_path)}})


@pytest.mark.parametrize("method", ["matlab", "pil", "torch"])
def test_sr_downsampled_lr_is_resized_hr_crop(tmp_path, method):
    hr_ds = _hr_folder(tmp_path)
    ds = make({"name": "sr-downsampled", "args": {"scale": 3, "inp_size": 6, "resize": method}},
              args={"dataset": hr_ds})
    torch.manual_seed(2)
    for i in range(len(ds)):
        item = ds[i]
        gt, inp = item["gt"], item["inp"]
        assert gt.shape == (3, 18, 18) and inp.shape == (3, 6, 6)
        assert torch.equal(inp, resize(gt, (6, 6), method=method))
        # the HR patch is a window of the source image
        img = hr_ds[i]
        hits = [(y, x) for y in range(img.shape[1] - 17) for x in range(img.shape[2] - 17)
                if torch.equal(img[:, y:y + 18, x:x + 18], gt)]
        assert len(hits) == 1
    if method == "matlab":
        assert torch.equal(inp, imresize(gt, 1 / 3))


def test_sr_downsampled_augment_whole_image_determinism(tmp_path):
    hr_ds = _hr_folder(tmp_path, h=31, w=26)
    aug = make({"name": "sr-downsampled", "args": {"scale": 2, "inp_size": 5, "augment": True}},
               args={"dataset": hr_ds})
    torch.manual_seed(9)
    items = [aug[k % 2] for k in range(12)]
    for it in items:
        # MATLAB resizing commutes with flips and transposes (symmetric kernel and padding)
        assert torch.allclose(it["inp"], imresize(it["gt"], 0.5), atol=1e-6)
    torch.manual_seed(9)
    again = [aug[k % 2] for k in range(12)]
    assert all(torch.equal(a["gt"], b["gt"]) and torch.equal(a["inp"], b["inp"]) for a, b in zip(items, again))
    assert len({tuple(it["gt"].flatten()[:4].tolist()) for it in items}) > 1
    whole = make({"name": "sr-downsampled", "args": {"scale": 4}}, args={"dataset": hr_ds})[0]
    assert whole["gt"].shape == (3, 28, 24) and whole["inp"].shape == (3, 7, 6)
    assert torch.equal(whole["gt"], hr_ds[0][:, :28, :24])
    assert torch.equal(whole["inp"], imresize(whole["gt"], 0.25))


def test_sr_downsampled_errors(tmp_path):
    hr_ds = _hr_folder(tmp_path, n=1, h=10, w=12)
    with pytest.raises(ValueError, match=r"smaller than the 12x12 HR crop \(inp_size 6 x scale 2\)"):
        make({"name": "sr-downsampled", "args": {"scale": 2, "inp_size": 6}}, args={"dataset": hr_ds})[0]
    with pytest.raises(ValueError, match="smaller than scale 11"):
        make({"name": "sr-downsampled", "args": {"scale": 11}}, args={"dataset": hr_ds})[0]
    for s in (0, 2.5, None):
        with pytest.raises(ValueError, match="scale must be a positive integer"):
            make({"name": "sr-downsampled", "args": {"scale": s}}, args={"dataset": hr_ds})
    with pytest.raises(ValueError, match="resize must be one of"):
        make({"name": "sr-downsampled", "args": {"scale": 2, "resize": "cv2"}}, args={"dataset": hr_ds})
