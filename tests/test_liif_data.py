"""Image folders, bundled sample photographs, the resize front end and LIIF's training wrappers
(sr-implicit-downsampled / sr-implicit-paired, as the official datasets/wrappers.py)."""
import numpy as np
import pytest
import torch
from PIL import Image

from fastliif import data
from fastliif.data.resize import resize
from fastliif.reference.coord import make_coord


def write_pngs(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i, (h, w) in enumerate(sizes):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:04d}.png")
        arrays.append(arr)
    return arrays


def test_image_folder_reads_sorted_rgb_with_repeat_cache_first_k(tmp_path):
    arrays = write_pngs(tmp_path / "hr", [(20, 30), (25, 17), (18, 18)])
    Image.fromarray(arrays[0][:, :, 0]).save(tmp_path / "hr" / "0003.png")  # grayscale -> RGB
    (tmp_path / "hr" / "notes.txt").write_text("ignored")
    ds = data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "hr"), "repeat": 2}})
    assert len(ds) == 8
    x = ds[1]
    assert x.dtype == torch.float32 and x.shape == (3, 25, 17)
    assert torch.equal(x, torch.from_numpy(arrays[1]).permute(2, 0, 1).float() / 255)
    assert torch.equal(ds[5], ds[1])  # repeat wraps around
    gray = ds[3]
    assert gray.shape == (3, 20, 30) and torch.equal(gray[0], gray[2])
    cached = data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "hr"), "cache": "in_memory",
                                                          "first_k": 2}})
    assert len(cached) == 2 and cached[0] is cached[0] and torch.equal(cached[0], ds[0])


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "none")}})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "empty")}})
    write_pngs(tmp_path / "ok", [(4, 4)])
    with pytest.raises(ValueError, match="repeat"):
        data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "ok"), "repeat": 0}})
    with pytest.raises(ValueError, match="cache"):
        data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "ok"), "cache": "disk"}})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    ds = data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "bad")}})
    with pytest.raises(ValueError, match="x.png: not a readable image"):
        ds[0]
    with pytest.raises(KeyError, match="unknown dataset"):
        data.make({"name": "no-such-dataset"})


def test_sample_images_are_bundled_photographs():
    ds = data.make({"name": "sample-images", "args": {"names": ["coffee", "camera", "grace_hopper"]}})
    coffee, camera, hopper = ds[0], ds[1], ds[2]
    assert coffee.shape == (3, 400, 600) and camera.shape == (3, 512, 512) and hopper.shape == (3, 600, 512)
    import skimage.data
    assert torch.equal(coffee, torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1).float() / 255)
    assert torch.equal(camera[0], camera[1])
    with pytest.raises(ValueError, match="unknown sample image"):
        data.make({"name": "sample-images", "args": {"names": ["lena"]}})


def test_resize_pil_is_the_official_resize_fn():
    torch.manual_seed(0)
    img = torch.rand(3, 30, 44)
    out = resize(img, (11, 17), "pil")
    # official: ToPILImage (mul(255).byte(): truncation), Resize(BICUBIC) to (h, w), ToTensor
    arr = (img * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    want = np.asarray(Image.fromarray(arr).resize((17, 11), Image.BICUBIC), dtype=np.float32) / 255
    assert out.shape == (3, 11, 17)
    assert torch.equal(out, torch.from_numpy(want).permute(2, 0, 1))


def test_resize_methods_agree_roughly_and_validate():
    torch.manual_seed(1)
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 48), 5, 1, 2)[0]  # smooth
    outs = {m: resize(img, (16, 12), m) for m in ("matlab", "pil", "torch")}
    for m, o in outs.items():
        assert o.shape == (3, 16, 12), m
    assert (outs["matlab"] - outs["torch"])[:, 2:-2, 2:-2].abs().max() < 0.02
    assert torch.equal(resize(img[None], (16, 12), "torch")[0], outs["torch"])
    with pytest.raises(ValueError, match="unknown method"):
        resize(img, (4, 4), "lanczos")
    with pytest.raises(ValueError, match="size must be"):
        resize(img, (0, 4))
    with pytest.raises(ValueError, match="empty"):
        resize(torch.rand(3, 0, 4), (4, 4))
    with pytest.raises(ValueError, match="floating"):
        resize(torch.zeros(3, 4, 4, dtype=torch.uint8), (2, 2))


def hr_dataset(tmp_path, sizes=((120, 130), (110, 150))):
    write_pngs(tmp_path / "hr", sizes)
    return data.make({"name": "image-folder", "args": {"root_path": str(tmp_path / "hr")}})


@pytest.mark.parametrize("resize_method", ["pil", "torch", "matlab"])
def test_implicit_downsampled_crop_queries_are_hr_pixels(tmp_path, resize_method):
    ds = hr_dataset(tmp_path)
    wrapper = data.make({"name": "sr-implicit-downsampled",
                         "args": {"inp_size": 16, "scale_min": 1.5, "scale_max": 4, "resize": resize_method}},
                        args={"dataset": ds})
    torch.manual_seed(0)
    for idx in range(len(wrapper)):
        item = wrapper[idx]
        inp, coord, cell, gt = item["inp"], item["coord"], item["cell"], item["gt"]
        assert inp.shape == (3, 16, 16)
        n = round(len(coord) ** 0.5)
        assert n * n == len(coord) and 24 <= n <= 64  # round(16 * s), s in [1.5, 4]
        assert torch.equal(coord, make_coord((n, n)))  # all pixels, in raster order
        assert torch.allclose(cell, torch.full_like(cell, 2 / n))
        # the HR crop is a window of the image, and inp is its resize
        hr = ds[idx]
        crop = gt.view(n, n, 3).permute(2, 0, 1)
        hits = [(x, y) for x in range(hr.shape[1] - n + 1) for y in range(hr.shape[2] - n + 1)
                if torch.equal(hr[:, x, y], crop[:, 0, 0]) and torch.equal(hr[:, x:x + n, y:y + n], crop)]
        assert hits, "gt is not a crop of the HR image"
        assert torch.equal(inp, resize(crop, (16, 16), resize_method))


def test_implicit_downsampled_sample_q_augment_and_determinism(tmp_path):
    ds = hr_dataset(tmp_path)
    spec = {"name": "sr-implicit-downsampled",
            "args": {"inp_size": 12, "scale_min": 2, "scale_max": 3, "augment": True, "sample_q": 100}}
    wrapper = data.make(spec, args={"dataset": ds})
    torch.manual_seed(7)
    a = wrapper[0]
    torch.manual_seed(7)
    b = wrapper[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["coord"].shape == (100, 2) and a["gt"].shape == (100, 3) and a["cell"].shape == (100, 2)
    assert len({tuple(c) for c in a["coord"].tolist()}) == 100  # without replacement
    assert a["coord"].abs().max() < 1 and a["gt"].min() >= 0 and a["gt"].max() <= 1
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        seen.add(tuple(wrapper[1]["inp"][:, 0, 0].tolist()))
    assert len(seen) > 1
    with pytest.raises(ValueError, match="sample_q=5000 exceeds"):
        data.make({"name": "sr-implicit-downsampled", "args": {"inp_size": 12, "scale_min": 2, "sample_q": 5000}},
                  args={"dataset": ds})[0]
    with pytest.raises(ValueError, match="smaller than the"):
        data.make({"name": "sr-implicit-downsampled", "args": {"inp_size": 60, "scale_min": 3}},
                  args={"dataset": ds})[0]
    with pytest.raises(ValueError, match="scale_min <= scale_max"):
        data.make({"name": "sr-implicit-downsampled", "args": {"scale_min": 3, "scale_max": 2}}, args={"dataset": ds})


def test_implicit_downsampled_whole_image_for_validation(tmp_path):
    ds = hr_dataset(tmp_path, sizes=((101, 77),))
    item = data.make({"name": "sr-implicit-downsampled", "args": {"scale_min": 3}}, args={"dataset": ds})[0]
    assert item["inp"].shape == (3, 33, 25)  # floor(101/3), floor(77/3)
    assert item["gt"].shape == (99 * 75, 3)


def test_implicit_paired_aligned_crops(tmp_path):
    torch.manual_seed(0)
    hr = torch.rand(3, 40, 48)
    lr = resize(hr, (10, 12), "torch")
    pairs = [(lr, hr)]
    wrapper = data.make({"name": "sr-implicit-paired", "args": {"inp_size": 6, "augment": False}},
                        args={"dataset": pairs})
    item = wrapper[0]
    crop = item["gt"].view(24, 24, 3).permute(2, 0, 1)
    # find the LR crop and check the HR crop sits at 4x its offset
    found = [(x, y) for x in range(5) for y in range(7) if torch.equal(lr[:, x:x + 6, y:y + 6], item["inp"])]
    assert len(found) == 1
    x, y = found[0]
    assert torch.equal(crop, hr[:, 4 * x:4 * x + 24, 4 * y:4 * y + 24])
    whole = data.make({"name": "sr-implicit-paired"}, args={"dataset": pairs})[0]
    assert whole["inp"].shape == (3, 10, 12) and whole["gt"].shape == (40 * 48, 3)
