"""SRMD/UDVD degradations, kernel PCA, offline preparation and the UDVD datasets."""
import errno
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import multivariate_normal

from fastliif.atomic import DiskFullError
from fastliif.cli import main
from fastliif.data import degradations as deg
from fastliif.data.augment import dihedral
from fastliif.data import make, save_image
from fastliif.data import udvd_data as ud
from fastliif.data.io import load_image

PCA_N = 2000  # small sample for speed; the default is 10000


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    # Never touch ~/.cache from tests.
    monkeypatch.setenv("FASTLIIF_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pca():
    return deg.compute_pca(PCA_N, seed=7)


def _scipy_kernel(size, sx, sy, theta):
    # Independent: the Gaussian pdf with covariance R diag(sx^2, sy^2) R^T at integer (x, y) offsets.
    r = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = r @ np.diag([sx * sx, sy * sy]) @ r.T
    offs = np.arange(size) - size // 2
    xx, yy = np.meshgrid(offs, offs)  # xx: column offset, yy: row offset
    k = multivariate_normal(mean=[0, 0], cov=cov).pdf(np.stack([xx, yy], -1))
    return k / k.sum()


def _images(root, sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    for i, (h, w) in enumerate(sizes):
        save_image(torch.rand(3, h, w, generator=g), os.path.join(root, f"im{i}.png"))


# ---------------------------------------------------------------------------------------------
# kernels

def test_isotropic_kernel_normalised_symmetric_and_separable():
    for sigma in torch.empty(4).uniform_(0.2, 4.0).tolist():
        k = deg.isotropic_gaussian_kernel(15, sigma)
        assert k.shape == (15, 15) and k.dtype == torch.float64
        assert abs(k.sum().item() - 1) < 1e-12
        torch.testing.assert_close(k, k.T, rtol=0, atol=1e-15)
        torch.testing.assert_close(k, k.flip(0, 1), rtol=0, atol=1e-15)
        g = torch.exp(-(torch.arange(15, dtype=torch.float64) - 7) ** 2 / (2 * sigma ** 2))
        torch.testing.assert_close(k, torch.outer(g, g) / torch.outer(g, g).sum(), rtol=1e-12, atol=1e-15)


def test_anisotropic_kernel_matches_scipy_and_rotates():
    rng = np.random.default_rng()
    for size in (15, 9):
        sx, sy = rng.uniform(0.5, 3.0, 2)
        theta = rng.uniform(0, math.pi)
        k = deg.anisotropic_gaussian_kernel(size, sx, sy, theta)
        assert abs(k.sum().item() - 1) < 1e-12
        np.testing.assert_allclose(k.numpy(), _scipy_kernel(size, sx, sy, theta), rtol=1e-10, atol=1e-14)
        # Turning the axes by 90 degrees turns the kernel by 90 degrees; by 180, it is unchanged.
        k90 = deg.anisotropic_gaussian_kernel(size, sx, sy, theta + math.pi / 2)
        torch.testing.assert_close(k90, torch.rot90(k, -1), rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(deg.anisotropic_gaussian_kernel(size, sx, sy, theta + math.pi), k,
                                   rtol=1e-10, atol=1e-14)
    # Equal stds: the isotropic kernel whatever theta.
    torch.testing.assert_close(deg.anisotropic_gaussian_kernel(15, 1.3, 1.3, 0.7),
                               deg.isotropic_gaussian_kernel(15, 1.3), rtol=1e-12, atol=1e-15)


def test_kernel_errors():
    with pytest.raises(ValueError, match="odd"):
        deg.isotropic_gaussian_kernel(14, 1.0)
    with pytest.raises(ValueError, match="odd"):
        deg.anisotropic_gaussian_kernel(0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="sigma must be"):
        deg.isotropic_gaussian_kernel(15, -1.0)
    with pytest.raises(ValueError, match="sigma_y must be"):
        deg.anisotropic_gaussian_kernel(15, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="sigma_x must be"):
        deg.anisotropic_gaussian_kernel(15, float("nan"), 1.0, 0.0)
    with pytest.raises(ValueError, match="kernel kind"):
        deg.random_kernel(0, kind="motion")
    with pytest.raises(ValueError, match="no default sigma range for scale 5"):
        deg.random_kernel(0, scale=5)
    with pytest.raises(ValueError, match="noise_range"):
        deg.random_noise_level(0, (10, 5))


def test_sampled_ranges_respected():
    g = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31, ())))
    iso = [deg.sample_kernel_params(g, "isotropic", 2) for _ in range(200)]
    assert all(0.2 <= p["sigma_x"] == p["sigma_y"] <= 2.0 for p in iso)
    assert max(p["sigma_x"] for p in iso) > 1.8 and min(p["sigma_x"] for p in iso) < 0.4  # spans the range
    assert all(0.2 <= p["sigma_x"] <= 4.0 for p in (deg.sample_kernel_params(g, "isotropic", 4) for _ in range(50)))
    aniso = [deg.sample_kernel_params(g, "anisotropic", 2) for _ in range(200)]
    for p in aniso:
        assert 0.5 <= p["sigma_y"] ** 2 <= p["sigma_x"] ** 2 <= 6.0 + 1e-12 and 0 <= p["theta"] < math.pi
    custom = [deg.sample_kernel_params(g, "isotropic", 2, sigma_range=(1.0, 1.5))["sigma_x"] for _ in range(50)]
    assert all(1.0 <= s <= 1.5 for s in custom)
    levels = [deg.random_noise_level(g) for _ in range(200)]
    assert all(0 <= v <= 75 for v in levels) and max(levels) > 60


def test_determinism_with_seed():
    for kind in deg.KERNEL_KINDS:
        assert torch.equal(deg.random_kernel(3, kind), deg.random_kernel(torch.Generator().manual_seed(3), kind))
        assert not torch.equal(deg.random_kernel(3, kind), deg.random_kernel(4, kind))
    hr = torch.rand(3, 32, 30)
    k = deg.random_kernel(1)
    a, b = deg.degrade(hr, k, 2, 20.0, generator=5), deg.degrade(hr, k, 2, 20.0, generator=5)
    assert torch.equal(a, b) and not torch.equal(a, deg.degrade(hr, k, 2, 20.0, generator=6))
    assert torch.equal(deg.compute_pca(300, seed=2), deg.compute_pca(300, seed=2))


# ---------------------------------------------------------------------------------------------
# PCA

def test_pca_orthonormal_and_round_trip(pca):
    assert pca.shape == (15, 225) and pca.dtype == torch.float64
    torch.testing.assert_close(pca @ pca.T, torch.eye(15, dtype=torch.float64), rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31, ())))
    kernels = torch.stack([deg.random_kernel(g, kind) for kind in deg.KERNEL_KINDS for _ in range(10)])
    code = deg.project_kernel(kernels, pca)
    assert code.shape == (20, 15)
    rec = deg.reconstruct_kernel(code, pca)
    rel = (rec - kernels).flatten(1).norm(dim=1) / kernels.flatten(1).norm(dim=1)
    assert rel.max() < 0.1, rel.max()
    # A random direction is represented far worse: the basis is fitted to Gaussian kernels.
    noise = torch.rand(15, 15, dtype=torch.float64)
    noise_rel = (deg.reconstruct_kernel(deg.project_kernel(noise, pca), pca) - noise).norm() / noise.norm()
    assert noise_rel > 5 * rel.max()


def test_pca_is_uncentred_column_major_eigenbasis():
    # Rebuild the same random kernels with scipy, column-major, and take the top eigenvectors of X X^T.
    n, seed = 300, 11
    u = torch.rand(3, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    theta, l1 = math.pi * u[0], 0.1 + 12.0 * u[1]
    l2 = 0.1 + (l1 - 0.1) * u[2]
    x = np.stack([_scipy_kernel(15, math.sqrt(a), math.sqrt(b), t).reshape(-1, order="F")
                  for a, b, t in zip(l1, l2, theta)], 1)
    w, v = np.linalg.eigh(x @ x.T)
    top = v[:, -15:].T
    p = deg.compute_pca(n, 15, seed).numpy()
    # Same subspace (signs / order within it aside): equal projectors.
    np.testing.assert_allclose(p.T @ p, top.T @ top, atol=1e-8)
    assert w[-15] > 1.2 * w[-16]  # a gap, so the subspace is well defined


def test_pca_save_load_and_default_cache(tmp_path, monkeypatch, pca):
    path = str(tmp_path / "p" / "pca.pt")
    deg.save_pca(pca, path)
    assert torch.equal(deg.load_pca(path), pca)
    with pytest.raises(FileNotFoundError, match="PCA file not found"):
        deg.load_pca(str(tmp_path / "nope.pt"))
    first = deg.default_pca(n_samples=400)
    cached = deg.default_pca_path(n_samples=400)
    assert cached.startswith(str(tmp_path / "cache")) and os.path.isfile(cached)
    mtime = os.stat(cached).st_mtime_ns

    def no_recompute(*args, **kwargs):
        raise AssertionError("default_pca recomputed instead of reading the cache")

    monkeypatch.setattr(deg, "compute_pca", no_recompute)
    assert torch.equal(deg.default_pca(n_samples=400), first)
    assert os.stat(cached).st_mtime_ns == mtime
    with pytest.raises(ValueError, match=r"\(\.\.\., 15, 15\)"):
        deg.project_kernel(torch.rand(9, 9), pca)
    with pytest.raises(ValueError, match="2-D tensor"):
        deg.project_kernel(torch.rand(15, 15), torch.rand(225))
    with pytest.raises(ValueError, match=r"code must be \(\.\.\., 15\)"):
        deg.reconstruct_kernel(torch.rand(14), pca)


# ---------------------------------------------------------------------------------------------
# degradation

def test_blur_is_true_convolution_with_mirror_padding():
    x = torch.rand(2, 20, 17, dtype=torch.float64)
    k = torch.rand(7, 7, dtype=torch.float64)  # asymmetric: catches a missing flip
    k /= k.sum()
    out = deg.blur(x, k)
    # torch 'reflect' (edge not repeated) is ndimage 'mirror'.
    ref = np.stack([ndimage.convolve(c, k.numpy(), mode="mirror") for c in x.numpy()])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-14)
    ref_wrap = np.stack([ndimage.convolve(c, k.numpy(), mode="wrap") for c in x.numpy()])
    np.testing.assert_allclose(deg.blur(x, k, "circular").numpy(), ref_wrap, rtol=1e-12, atol=1e-14)


def test_degrade_shapes_ranges_and_batches():
    hr = torch.rand(3, 40, 36)
    k = deg.random_kernel(0)
    lr = deg.degrade(hr, k, 2)
    assert lr.shape == (3, 20, 18) and lr.dtype == torch.float32
    assert lr.min() > -0.1 and lr.max() < 1.1
    noisy = deg.degrade(hr, k, 2, 50.0, generator=1)
    assert noisy.min() < 0 or noisy.max() > 1
    clamped = deg.degrade(hr, k, 2, 50.0, generator=1, clamp=True)
    assert clamped.min() >= 0 and clamped.max() <= 1
    torch.testing.assert_close(clamped, noisy.clamp(0, 1))
    batch = deg.degrade(torch.stack([hr, hr.flip(-1)]), k, 2)
    torch.testing.assert_close(batch[0], lr)
    assert deg.degrade(hr.double(), k, 2).dtype == torch.float64
    assert deg.degrade(torch.rand(3, 33, 30), k, 3).shape == (3, 11, 10)


def test_noise_std_on_flat_image():
    level = float(torch.empty(()).uniform_(5, 60))
    hr = torch.full((3, 128, 128), 0.5, dtype=torch.float64)
    clean = deg.degrade(hr, deg.random_kernel(2), 2)
    torch.testing.assert_close(clean, torch.full_like(clean, 0.5), rtol=0, atol=1e-12)  # blur + resize keep flat
    lr = deg.degrade(hr, deg.random_kernel(2), 2, level, generator=int(torch.randint(0, 2 ** 31, ())))
    std = (lr - 0.5).std().item()
    assert abs(std / (level / 255) - 1) < 0.05, (std, level / 255)
    assert abs((lr - 0.5).mean().item()) < 4 * level / 255 / math.sqrt(lr.numel())


def test_degrade_errors():
    k = deg.isotropic_gaussian_kernel(15, 1.0)
    with pytest.raises(ValueError, match="not a multiple of scale 2"):
        deg.degrade(torch.rand(3, 31, 30), k, 2)
    with pytest.raises(ValueError, match="noise_level must be"):
        deg.degrade(torch.rand(3, 30, 30), k, 2, -1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        deg.degrade(torch.full((3, 30, 30), float("nan")), k, 2)
    with pytest.raises(TypeError, match="floating"):
        deg.degrade(torch.ones(3, 30, 30, dtype=torch.uint8), k, 2)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        deg.degrade(torch.rand(30, 30), k, 2)
    with pytest.raises(ValueError, match="odd k"):
        deg.degrade(torch.rand(3, 30, 30), torch.rand(4, 4), 2)
    with pytest.raises(ValueError, match="scale must be"):
        deg.degrade(torch.rand(3, 30, 30), k, 0)
    with pytest.raises(ValueError, match="padding must be"):
        deg.degrade(torch.rand(3, 30, 30), k, 2, padding="zeros")
    with pytest.raises(ValueError, match="empty"):
        deg.degrade(torch.rand(3, 0, 30), k, 2)


def test_maps_and_19_channel_input(pca):
    lr = torch.rand(3, 6, 5)
    code = deg.project_kernel(deg.random_kernel(4), pca)
    level = float(torch.empty(()).uniform_(0, 75))
    kmap, nmap = deg.degradation_maps(code, level, 6, 5)
    assert kmap.shape == (15, 6, 5) and nmap.shape == (1, 6, 5) and kmap.dtype == nmap.dtype == torch.float32
    torch.testing.assert_close(kmap, code.float()[:, None, None].expand(15, 6, 5))
    torch.testing.assert_close(nmap, torch.full((1, 6, 5), level / 255))
    x = deg.udvd_input(lr, code, level)
    assert x.shape == (19, 6, 5)
    torch.testing.assert_close(x[:3], lr)
    torch.testing.assert_close(x[3:18], kmap)
    torch.testing.assert_close(x[18:], nmap)
    codes = torch.stack([code, -code])
    xb = deg.udvd_input(torch.stack([lr, lr]), codes, torch.tensor([level, 3.0]))
    assert xb.shape == (2, 19, 6, 5)
    torch.testing.assert_close(xb[0], x)
    torch.testing.assert_close(xb[1, 3:18], -kmap)
    torch.testing.assert_close(xb[1, 18], torch.full((6, 5), 3 / 255))
    with pytest.raises(ValueError, match=r"code of shape \(N, dim\)"):
        deg.udvd_input(torch.stack([lr, lr]), code, level)
    with pytest.raises(ValueError, match="1-D PCA code"):
        deg.degradation_maps(codes, level, 6, 5)
    with pytest.raises(ValueError, match="noise_level must be"):
        deg.degradation_maps(code, -2, 6, 5)


# ---------------------------------------------------------------------------------------------
# offline preparation and datasets

def test_prepare_round_trip_matches_whole_image_degradation(tmp_path, pca):
    src, out = tmp_path / "hr", tmp_path / "out"
    _images(src, [(64, 70), (41, 50), (14, 20)])  # the last is smaller than the patch: skipped
    with pytest.warns(UserWarning, match="skipping im2.png"):
        m = ud.prepare_udvd(str(src), str(out), scale=2, patch_size=16, n_per_image=3, noise_range=(0, 0),
                            kernel_kinds=("isotropic", "anisotropic"), seed=1, pca=pca, progress=False)
    assert m["count"] == 6 and m["skipped"] == ["im2.png"] and m["hr_dtype"] == "uint8"
    assert json.load(open(out / "manifest.json"))["count"] == 6
    ds = make({"name": "udvd-prepared", "args": {"root_path": str(out), "repeat": 2}})
    assert len(ds) == 12
    box, kernels = np.load(out / "box.npy"), np.load(out / "kernel.npy")
    params = np.load(out / "params.npy")
    for j in range(6):
        item = ds[j + 6]  # repeat wraps around
        assert set(item) == {"inp", "kernel", "noise", "gt"}
        assert item["inp"].shape == (3, 8, 8) and item["kernel"].shape == (15, 8, 8)
        assert item["noise"].shape == (1, 8, 8) and item["gt"].shape == (3, 16, 16)
        assert all(v.dtype == torch.float32 for v in item.values())
        si, y0, x0 = box[j]
        img = load_image(str(src / f"im{si}.png"))
        torch.testing.assert_close(item["gt"], img[:, y0:y0 + 16, x0:x0 + 16], rtol=0, atol=0)
        h, w = (d - d % 2 for d in img.shape[-2:])
        k = torch.from_numpy(kernels[j])
        torch.testing.assert_close(k, deg.anisotropic_gaussian_kernel(15, *params[j, 1:]), rtol=0, atol=1e-15)
        full = deg.degrade(img[:, :h, :w], k, 2)
        torch.testing.assert_close(item["inp"], full[:, y0 // 2:y0 // 2 + 8, x0 // 2:x0 // 2 + 8], rtol=1e-5, atol=1e-6)
        code = deg.project_kernel(k, pca).float()
        torch.testing.assert_close(item["kernel"], code[:, None, None].expand(15, 8, 8))
        assert torch.count_nonzero(item["noise"]) == 0
    assert torch.equal(deg.load_pca(str(out / "pca.pt")), pca)
    # The arrays feed the UDVD model as they are.
    from fastliif.models import make as make_model
    model = make_model({"name": "udvd-reference", "args": {}})
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    with torch.no_grad():
        outs = model(batch["inp"], batch["kernel"], batch["noise"])
    assert outs[-1].shape == batch["gt"].shape


def test_prepare_noise_determinism_cache_and_augment(tmp_path, pca):
    src = [torch.rand(3, 30, 28) for _ in range(2)]  # a dataset of float tensors: HR kept float32
    kw = dict(scale=2, patch_size=12, n_per_image=4, kernel_kinds="anisotropic", pca=pca, progress=False)
    m = ud.prepare_udvd(src, str(tmp_path / "a"), seed=3, **kw)
    ud.prepare_udvd(src, str(tmp_path / "b"), seed=3, **kw)
    ud.prepare_udvd(src, str(tmp_path / "c"), seed=4, **kw)
    assert m["hr_dtype"] == "float32"
    for name in ud.ARRAYS:
        assert np.array_equal(np.load(tmp_path / "a" / f"{name}.npy"), np.load(tmp_path / "b" / f"{name}.npy"))
    assert not np.array_equal(np.load(tmp_path / "a" / "lr.npy"), np.load(tmp_path / "c" / "lr.npy"))
    levels = np.load(tmp_path / "a" / "noise.npy")
    assert ((levels >= 0) & (levels <= 75)).all() and len(set(levels.tolist())) == 8
    ds = ud.UDVDPrepared(str(tmp_path / "a"))
    mem = ud.UDVDPrepared(str(tmp_path / "a"), cache="in_memory")
    for j in range(len(ds)):
        a, b = ds[j], mem[j]
        assert all(torch.equal(a[key], b[key]) for key in a)
        torch.testing.assert_close(a["noise"], torch.full((1, 6, 6), float(levels[j]) / 255))
        box = np.load(tmp_path / "a" / "box.npy")[j]
        torch.testing.assert_close(a["gt"], src[box[0]][:, box[1]:box[1] + 12, box[2]:box[2] + 12], rtol=0, atol=0)
    # Augmentation turns LR, HR and the kernel together: the code is that of the turned kernel.
    aug = ud.UDVDPrepared(str(tmp_path / "a"), augment=True)
    kernel = torch.from_numpy(np.load(tmp_path / "a" / "kernel.npy")[0])
    plain = ds[0]
    for _ in range(6):
        item = aug[0]
        matches = [t for t in ((h, v, tr) for h in (0, 1) for v in (0, 1) for tr in (0, 1))
                   if torch.equal(item["inp"], dihedral(plain["inp"], *t))
                   and torch.equal(item["gt"], dihedral(plain["gt"], *t))]
        assert matches
        code = deg.project_kernel(dihedral(kernel, *matches[0]), pca).float()
        torch.testing.assert_close(item["kernel"][:, 0, 0], code)


def test_online_wrapper_matches_prepared(tmp_path, pca):
    src = [torch.rand(3, 26, 30), torch.rand(3, 40, 24)]
    ud.prepare_udvd(src, str(tmp_path / "p"), scale=2, patch_size=16, n_per_image=1, seed=9, pca=pca,
                    progress=False)
    prepared = ud.UDVDPrepared(str(tmp_path / "p"))
    online = make({"name": "udvd-online", "args": {"patch_size": 16, "seed": 9, "pca": pca}}, args={"dataset": src})
    assert len(online) == 2
    for i in range(2):
        a, b = prepared[i], online[i]
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    fresh = ud.UDVDOnline(src, patch_size=None, pca=pca)
    x, y = fresh[1], fresh[1]
    assert x["inp"].shape == (3, 20, 12) and x["gt"].shape == (3, 40, 24)
    assert not torch.equal(x["inp"], y["inp"])  # no seed: a new degradation each time
    with pytest.raises(ValueError, match="smaller than"):
        ud.UDVDOnline([torch.rand(3, 10, 10)], patch_size=16, pca=pca)[0]
    with pytest.raises(TypeError, match="float CxHxW"):
        ud.UDVDOnline([torch.rand(10, 10)], patch_size=4, pca=pca)[0]


def test_prepare_and_dataset_errors(tmp_path, pca):
    with pytest.raises(FileNotFoundError, match="source directory not found"):
        ud.prepare_udvd(str(tmp_path / "missing"), str(tmp_path / "o"), pca=pca, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ud.prepare_udvd(str(tmp_path / "empty"), str(tmp_path / "o"), pca=pca, progress=False)
    src = [torch.rand(3, 20, 20)]
    with pytest.raises(ValueError, match="multiple of scale 2"):
        ud.prepare_udvd(src, str(tmp_path / "o"), patch_size=15, pca=pca, progress=False)
    with pytest.raises(ValueError, match="kernel_kinds"):
        ud.prepare_udvd(src, str(tmp_path / "o"), patch_size=8, kernel_kinds=("box",), pca=pca, progress=False)
    with pytest.raises(ValueError, match="no default sigma range for scale 5"):
        ud.prepare_udvd(src, str(tmp_path / "o"), scale=5, patch_size=10, pca=pca, progress=False)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="nothing prepared"):
        ud.prepare_udvd(src, str(tmp_path / "o"), patch_size=32, pca=pca, progress=False)
    ud.prepare_udvd(src, str(tmp_path / "ok"), patch_size=8, n_per_image=1, pca=pca, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ud.prepare_udvd(src, str(tmp_path / "ok"), patch_size=8, n_per_image=1, pca=pca, progress=False)
    ud.prepare_udvd(src, str(tmp_path / "ok"), patch_size=8, n_per_image=2, pca=pca, progress=False, overwrite=True)
    assert len(ud.UDVDPrepared(str(tmp_path / "ok"))) == 2
    with pytest.raises(FileNotFoundError, match="not found"):
        ud.UDVDPrepared(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        ud.UDVDPrepared(str(tmp_path / "o"))
    with pytest.raises(ValueError, match="cache must be"):
        ud.UDVDPrepared(str(tmp_path / "ok"), cache="lmdb")
    with pytest.raises(IndexError):
        ud.UDVDPrepared(str(tmp_path / "ok"))[2]


def test_cli_prepare_udvd(tmp_path, capsys):
    src, out = tmp_path / "hr", tmp_path / "out"
    _images(src, [(36, 40), (32, 34)])
    code = main(["prepare-udvd", str(src), str(out), "--patch-size", "16", "--per-image", "2", "--seed", "5",
                 "--kernels", "isotropic,anisotropic"])
    captured = capsys.readouterr()
    assert code == 0 and "4 samples (2 images x 2, 0 skipped)" in captured.out
    assert "prepare-udvd" in captured.err  # the tqdm bar
    m = json.load(open(out / "manifest.json"))
    assert m["seed"] == 5 and m["kernel_kinds"] == ["isotropic", "anisotropic"] and m["patch_size"] == 16
    assert len(make({"name": "udvd-prepared", "args": {"root_path": str(out)}})) == 4
    for argv, msg in ((["prepare-udvd", str(tmp_path / "nope"), str(out)], "source directory not found"),
                      (["prepare-udvd", str(src), str(out), "--patch-size", "15"], "multiple of --scale"),
                      (["prepare-udvd", str(src), str(out), "--patch-size", "16", "--no-progress"], "overwrite"),
                      (["prepare-udvd", str(src), str(out), "--kernels", "box", "--overwrite"], "kernel_kinds")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastliif prepare-udvd: error: ") and msg in err and err.count("\n") == 1


class _RunsCode:
    """Unpickling this would create a marker folder: it must never happen."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _not_pca_files(root):
    import pickle
    marker = str(root / "pickle_ran")
    files = {"plain.pkl": lambda p: pickle.dump(_RunsCode(marker), open(p, "wb")),
             "torch_pickle.pt": lambda p: torch.save({"pca": torch.eye(3), "x": _RunsCode(marker)}, p),
             "empty.pt": lambda p: open(p, "wb").close(),
             "text.pt": lambda p: open(p, "w").write("not a tensor file"),
             "truncated.pt": lambda p: (torch.save({"pca": torch.rand(15, 225)}, p),
                                        open(p, "r+b").truncate(os.path.getsize(p) // 2)),
             "no_pca_key.pt": lambda p: torch.save({"weights": torch.rand(15, 225)}, p),
             "bad_shape.pt": lambda p: torch.save({"pca": torch.rand(15, 224)}, p)}
    for name, make_file in files.items():
        make_file(str(root / name))
    return marker, [str(root / name) for name in files]


def test_load_pca_refuses_pickles_and_other_files_in_one_line(tmp_path):
    marker, paths = _not_pca_files(tmp_path)
    for path in paths:
        with pytest.raises(ValueError) as info:
            deg.load_pca(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: not a PCA file") and "\n" not in msg, msg
        if "pickle" in os.path.basename(path):
            assert "pickles Python objects other than tensors" in msg
    assert not os.path.exists(marker)


def test_cli_prepare_udvd_pca_pickle_is_a_one_line_error(tmp_path, capsys, pca):
    src, out = tmp_path / "hr", tmp_path / "out"
    _images(src, [(20, 20)])
    marker, paths = _not_pca_files(tmp_path)
    for path in paths:
        assert main(["prepare-udvd", str(src), str(out), "--patch-size", "8", "--pca", path, "--no-progress"]) == 2
        stdout, err = capsys.readouterr()
        assert stdout == "" and err.startswith(f"fastliif prepare-udvd: error: {path}: not a PCA file")
        assert err.count("\n") == 1, err
    assert not os.path.exists(marker) and not out.exists()       # refused before any work
    good = tmp_path / "good.pt"
    deg.save_pca(pca, str(good))
    assert main(["prepare-udvd", str(src), str(out), "--patch-size", "8", "--pca", str(good), "--no-progress"]) == 0
    assert torch.equal(deg.load_pca(str(out / "pca.pt")), pca)


def _snapshot(folder):
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))}


def test_overwrite_keeps_old_data_until_the_new_is_complete(tmp_path, pca, monkeypatch):
    out = tmp_path / "p"
    kw = dict(scale=2, patch_size=8, pca=pca, progress=False)
    ud.prepare_udvd([torch.rand(3, 20, 20) for _ in range(2)], str(out), n_per_image=2, seed=1, **kw)
    old = _snapshot(out)
    assert "manifest.json" in old and "pca.pt" in old
    # An error after some samples are written (a bad third source): before, the manifest was
    # deleted first and the arrays rewritten in place, so the old data was lost.
    with pytest.raises(TypeError, match="source item 2"):
        ud.prepare_udvd([torch.rand(3, 20, 20), torch.rand(3, 20, 20), torch.rand(20, 20)], str(out),
                        n_per_image=3, seed=2, overwrite=True, **kw)
    assert _snapshot(out) == old
    # A full disk: reserving the arrays' space fails; a DiskFullError naming the file, old data kept.
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(DiskFullError, match=f"disk full while writing .*{os.sep}p{os.sep}(lr|hr|code).npy"):
        ud.prepare_udvd([torch.rand(3, 20, 20)], str(out), n_per_image=3, seed=2, overwrite=True, **kw)
    assert _snapshot(out) == old
    assert len(ud.UDVDPrepared(str(out))) == 4
    monkeypatch.undo()
    ud.prepare_udvd([torch.rand(3, 20, 20)], str(out), n_per_image=3, seed=2, overwrite=True, **kw)
    assert sorted(os.listdir(out)) == sorted(old) and len(ud.UDVDPrepared(str(out))) == 3


def test_cli_prepare_udvd_disk_full_is_a_one_line_error(tmp_path, capsys, pca, monkeypatch):
    src, out = tmp_path / "hr", tmp_path / "out"
    _images(src, [(20, 20)])
    good = tmp_path / "pca.pt"
    deg.save_pca(pca, str(good))

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    assert main(["prepare-udvd", str(src), str(out), "--patch-size", "8", "--pca", str(good), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastliif prepare-udvd: error: ") and "disk full while writing" in err
    assert err.count("\n") == 1 and os.listdir(out) == []
