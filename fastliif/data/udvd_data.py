"""UDVD / SRMD training data: degraded LR patches prepared offline, and an on-the-fly wrapper.

The seed's advice is to prepare SRMD/UDVD data offline: degrading on the fly (KAIR's online SRMD
dataset) is very slow. :func:`prepare_udvd` does it once and writes, under ``out_dir``:

* ``lr.npy``      (N, C, p/s, p/s) float32: the degraded LR patches, noise included. float32, not
  8-bit PNG, because rounding to 8 bits would change the noise the noise map describes (and clip it).
* ``hr.npy``      (N, C, p, p) uint8 when every source image is 8-bit (lossless), else float32.
* ``code.npy``    (N, 15) float32: the PCA code of each sample's blur kernel.
* ``noise.npy``   (N,) float32: each sample's noise level in 0-255 units (std = level / 255).
* ``kernel.npy``  (N, 15, 15) float64: the blur kernels themselves (augmentation re-projects them).
* ``params.npy``  (N, 4) float64: ``kind index, sigma_x, sigma_y, theta`` of each kernel.
* ``box.npy``     (N, 3) int64: ``source index, y0, x0`` of each HR patch in its source image.
* ``pca.pt``      the PCA matrix used (so the codes stay valid if the default PCA ever changes).
* ``manifest.json`` settings, sources, sample count (the arrays are allocated for every image, so
  rows past ``count`` are unused when small images were skipped); written last, so a directory without it is
  an interrupted preparation and :class:`UDVDPrepared` refuses it.

Every file goes through :mod:`fastliif.atomic`: the arrays are filled under temporary names (their
disk space reserved up front, so a full disk is a :class:`~fastliif.atomic.DiskFullError`, not a
SIGBUS halfway through a memory map) and renamed only once all samples are done. Data prepared
earlier in ``out_dir`` (``overwrite=True``) stays valid until then: an error or a kill during the
degradation leaves it untouched; only the final renames run without a manifest.

Each LR patch equals the matching crop of the whole (modcropped) source image degraded at once:
patches start on multiples of the scale and are degraded with a margin wide enough for the blur
and the bicubic filter (or up to the image border, where the same padding applies).
Image ``i`` draws from a generator seeded by ``(seed, i)``: results do not depend on the order.

Datasets (``fastliif.data.make``):

* ``udvd-prepared`` (root_path, repeat, cache, augment) reads that directory;
* ``udvd-online`` (dataset, ...) degrades the HR tensors of another dataset on the fly (small
  experiments only: it is the slow path the seed warns about).

Both yield ``{'inp': lr (3,h,w), 'kernel': (15,h,w), 'noise': (1,h,w), 'gt': hr (3,s*h,s*w)}``
float32, the arguments of ``model(inp, kernel, noise)``; the noise map holds ``level / 255``.
"""
import contextlib
import errno
import json
import math
import os
import warnings

import numpy as np
import torch
from numpy.lib.format import open_memmap

from ..atomic import atomic_path, write_json
from . import degradations as deg
from .augment import dihedral as apply_dihedral
from .io import is_image_file, load_image, open_image
from .registry import register

FORMAT = "fastliif-udvd"
VERSION = 1
ARRAYS = ("lr", "hr", "code", "noise", "kernel", "params", "box")
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "PA")


def _seeded(seed, index):
    # Independent stream per (seed, index), whatever order the items are visited in.
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _margin(scale, kernel_size):
    """HR context a patch needs so that blur + bicubic see the same pixels as on the whole image:
    half the blur kernel plus the half-width (2 * scale) of MATLAB's antialiased bicubic, rounded up
    to a multiple of the scale."""
    need = kernel_size // 2 + 2 * scale
    return scale * math.ceil(need / scale)


def _check_settings(scale, patch_size, kernel_kinds, noise_range):
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(patch_size, int)
                                   or patch_size < scale or patch_size % scale):
        raise ValueError(f"patch_size (HR) must be a positive multiple of scale {scale}, got {patch_size!r}")
    kinds = (kernel_kinds,) if isinstance(kernel_kinds, str) else tuple(kernel_kinds)
    if not kinds or any(k not in deg.KERNEL_KINDS for k in kinds):
        raise ValueError(f"kernel_kinds must be a non-empty subset of {deg.KERNEL_KINDS}, got {kernel_kinds!r}")
    deg._range("noise_range", noise_range)
    return kinds


def _check_hr(x, what):
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise TypeError(f"{what} must be a float CxHxW tensor, got "
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def _resolve_pca(pca):
    if pca is None:
        return deg.default_pca()
    if isinstance(pca, (str, os.PathLike)):
        return deg.load_pca(os.fspath(pca))
    deg._check_pca(pca)
    return pca.to(torch.float64)


def degrade_patch(img, y0, x0, patch_size, kernel, scale, padding="reflect"):
    """Noise-free LR of the HR patch ``img[:, y0:y0+p, x0:x0+p]`` (y0, x0 multiples of ``scale``),
    identical to that crop of ``degrade(modcrop(img))``: degrade a region with margins, crop."""
    h, w = (d - d % scale for d in img.shape[-2:])
    m = _margin(scale, kernel.shape[-1])
    top, left = min(m, y0), min(m, x0)
    bottom, right = min(m, h - y0 - patch_size), min(m, w - x0 - patch_size)
    region = img[:, y0 - top:y0 + patch_size + bottom, x0 - left:x0 + patch_size + right]
    lr = deg.degrade(region, kernel, scale, 0.0, padding=padding)
    t, l, n = top // scale, left // scale, patch_size // scale
    return lr[:, t:t + n, l:l + n]


class _Sampler:
    """Draws one degraded sample from an HR image with a given generator (shared by both paths)."""

    def __init__(self, scale, patch_size, kernel_kinds, noise_range, sigma_range, var_range, padding, pca,
                 kernel_size=deg.KERNEL_SIZE):
        self.kinds = _check_settings(scale, patch_size, kernel_kinds, noise_range)
        if padding not in deg.PADDING_MODES:
            raise ValueError(f"padding must be one of {deg.PADDING_MODES}, got {padding!r}")
        self.scale, self.patch_size, self.padding = scale, patch_size, padding
        self.noise_range = tuple(float(v) for v in noise_range)
        self.sigma_range, self.var_range = sigma_range, var_range
        self.pca, self.kernel_size = pca, deg._check_size(kernel_size)
        # Fail now, not on the first sample, if a default range is missing for this scale.
        for kind in self.kinds:
            deg.sample_kernel_params(torch.Generator().manual_seed(0), kind, scale, sigma_range, var_range)

    def fits(self, h, w):
        p = self.patch_size or self.scale
        return h - h % self.scale >= p and w - w % self.scale >= p

    def __call__(self, img, g):
        s = self.scale
        h, w = (d - d % s for d in img.shape[-2:])
        p = self.patch_size
        if p is None:  # whole (modcropped) image
            y0 = x0 = 0
            img = img[:, :h, :w]
            ph, pw = h, w
        else:
            y0 = s * int(torch.randint(0, (h - p) // s + 1, (), generator=g))
            x0 = s * int(torch.randint(0, (w - p) // s + 1, (), generator=g))
            ph = pw = p
        kind = self.kinds[int(torch.randint(0, len(self.kinds), (), generator=g))]
        params = deg.sample_kernel_params(g, kind, s, self.sigma_range, self.var_range)
        kernel = deg.kernel_from_params(params, self.kernel_size)
        level = deg.random_noise_level(g, self.noise_range)
        if p is None:
            lr = deg.degrade(img, kernel, s, 0.0, padding=self.padding)
        else:
            lr = degrade_patch(img, y0, x0, p, kernel, s, self.padding)
        if level > 0:
            lr = lr + torch.randn(lr.shape, generator=g, dtype=lr.dtype) * (level / 255.0)
        hr = img[:, y0:y0 + ph, x0:x0 + pw]
        return {"lr": lr, "hr": hr, "kernel": kernel, "params": params, "level": level, "box": (y0, x0),
                "code": deg.project_kernel(kernel, self.pca)}


def _item(lr, hr, kernel, level, pca, dihedral=None):
    """The dataset dict; ``dihedral`` = (flip_h, flip_v, transpose) applied to all three and the
    kernel code re-projected (an anisotropic kernel turns with the image)."""
    if dihedral is not None and any(dihedral):
        flip_h, flip_v, transpose = dihedral
        lr, hr, kernel = (apply_dihedral(t, flip_v, flip_h, transpose) for t in (lr, hr, kernel))
    code = deg.project_kernel(kernel, pca)
    kmap, nmap = deg.degradation_maps(code, level, *lr.shape[-2:])
    return {"inp": lr.float().contiguous(), "kernel": kmap, "noise": nmap, "gt": hr.float().contiguous()}


def _random_dihedral(g=None):
    return tuple(bool(b) for b in torch.randint(0, 2, (3,), generator=g))


# ---------------------------------------------------------------------------------------------
# offline preparation

class _FolderSource:
    def __init__(self, root):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"source directory not found: {root}")
        self.root = root
        self.files = sorted(f for f in os.listdir(root) if is_image_file(f))
        if not self.files:
            raise ValueError(f"no image files in {root}")

    def __len__(self):
        return len(self.files)

    def name(self, i):
        return self.files[i]

    def load(self, i):
        return load_image(os.path.join(self.root, self.files[i]), mode="RGB")

    def eight_bit(self):
        return all(open_image(os.path.join(self.root, f)).mode in EIGHT_BIT_MODES for f in self.files)


class _DatasetSource:
    def __init__(self, dataset):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"source must be a directory or a dataset of CxHxW tensors, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("source dataset is empty")
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def name(self, i):
        return str(i)

    def load(self, i):
        x = self.dataset[i]
        _check_hr(x, f"source item {i}")
        return x

    def eight_bit(self):
        return False


def prepare_udvd(src, out_dir, scale=2, patch_size=96, n_per_image=8, kernel_kinds=("isotropic",),
                 noise_range=deg.NOISE_RANGE, sigma_range=None, var_range=None, seed=0, pca=None,
                 hr_dtype="auto", padding="reflect", overwrite=False, progress=True):
    """Degrade ``n_per_image`` random HR patches (``patch_size`` HR pixels, a multiple of ``scale``)
    of every source image and write them to ``out_dir`` (layout in the module doc).

    ``src``: a directory of images, a dataset spec dict, or a dataset of float CxHxW tensors.
    ``kernel_kinds``: each sample picks one uniformly ('isotropic' = UDVD, add 'anisotropic' for SRMD).
    ``pca``: matrix, path, or None for :func:`degradations.default_pca`. ``hr_dtype``: 'uint8',
    'float32' or 'auto' (uint8 when every source file is 8-bit). Images smaller than the patch are
    skipped with a warning. Returns the manifest dict."""
    if isinstance(n_per_image, bool) or not isinstance(n_per_image, int) or n_per_image < 1:
        raise ValueError(f"n_per_image must be a positive integer, got {n_per_image!r}")
    if patch_size is None:
        raise ValueError("prepare_udvd needs a patch_size (patches of one size are stacked in one array)")
    if hr_dtype not in ("auto", "uint8", "float32"):
        raise ValueError(f"hr_dtype must be 'auto', 'uint8' or 'float32', got {hr_dtype!r}")
    if isinstance(src, dict):
        from .registry import make
        src = make(src)
    source = _FolderSource(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else _DatasetSource(src)
    pca = _resolve_pca(pca)
    sampler = _Sampler(scale, patch_size, kernel_kinds, noise_range, sigma_range, var_range, padding, pca)
    manifest_path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(manifest_path) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds prepared data (manifest.json); pass overwrite=True")
    if hr_dtype == "auto":
        hr_dtype = "uint8" if source.eight_bit() else "float32"
    os.makedirs(out_dir, exist_ok=True)

    from tqdm.auto import tqdm

    capacity = len(source) * n_per_image
    lr_p, k = patch_size // scale, sampler.kernel_size
    arrays, channels, count, skipped = None, None, 0, []
    bar = tqdm(total=len(source), desc="prepare-udvd", unit="img", disable=not progress)
    # Leaving `staged` renames every array into place, or, on an error, removes them all.
    with contextlib.ExitStack() as staged:
        try:
            for i in range(len(source)):
                img = source.load(i)
                if channels is None:
                    channels = img.shape[0]
                    shapes = {"lr": ((capacity, channels, lr_p, lr_p), np.float32),
                              "hr": ((capacity, channels, patch_size, patch_size), np.dtype(hr_dtype)),
                              "code": ((capacity, pca.shape[0]), np.float32), "noise": ((capacity,), np.float32),
                              "kernel": ((capacity, k, k), np.float64), "params": ((capacity, 4), np.float64),
                              "box": ((capacity, 3), np.int64)}
                    arrays = {name: _staged_array(staged, os.path.join(out_dir, f"{name}.npy"), shape, dt)
                              for name, (shape, dt) in shapes.items()}
                elif img.shape[0] != channels:
                    raise ValueError(f"source {source.name(i)} has {img.shape[0]} channels, earlier ones {channels}")
                if not sampler.fits(*img.shape[-2:]):
                    skipped.append(source.name(i))
                    warnings.warn(f"skipping {source.name(i)}: {tuple(img.shape[-2:])} is smaller than the "
                                  f"{patch_size}x{patch_size} patch")
                    bar.update(1)
                    continue
                g = _seeded(seed, i)
                for _ in range(n_per_image):
                    s = sampler(img, g)
                    hr = s["hr"].numpy()
                    arrays["lr"][count] = s["lr"].numpy()
                    arrays["hr"][count] = np.round(hr * 255).clip(0, 255) if hr_dtype == "uint8" else hr
                    arrays["code"][count] = s["code"].numpy()
                    arrays["noise"][count] = s["level"]
                    arrays["kernel"][count] = s["kernel"].numpy()
                    p = s["params"]
                    arrays["params"][count] = (deg.KERNEL_KINDS.index(p["kind"]), p["sigma_x"], p["sigma_y"],
                                               p["theta"])
                    arrays["box"][count] = (i, *s["box"])
                    count += 1
                bar.update(1)
        finally:
            bar.close()
            for name in arrays or {}:
                arrays[name].flush()
            arrays = None  # unmap before the files are renamed or removed
        if count == 0:
            raise ValueError(f"no source image is at least {patch_size}x{patch_size}: nothing prepared")
        # From here until the new manifest is written the directory holds a mix: refuse it meanwhile.
        with contextlib.suppress(FileNotFoundError):
            os.remove(manifest_path)
    deg.save_pca(pca, os.path.join(out_dir, "pca.pt"))
    manifest = {
        "format": FORMAT, "version": VERSION, "count": count, "capacity": capacity,
        "scale": scale, "patch_size": patch_size, "lr_patch_size": lr_p, "channels": channels,
        "n_per_image": n_per_image, "kernel_size": k, "kernel_kinds": list(sampler.kinds),
        "kernel_kind_names": list(deg.KERNEL_KINDS), "noise_range": list(sampler.noise_range),
        "sigma_range": list(sigma_range) if sigma_range else None,
        "var_range": list(var_range) if var_range else None, "seed": seed, "padding": padding,
        "hr_dtype": hr_dtype, "noise_units": "0-255 (std = level / 255)", "pca": "pca.pt",
        "arrays": {name: f"{name}.npy" for name in ARRAYS},
        "sources": [source.name(i) for i in range(len(source))], "skipped": skipped,
        "source_root": os.path.abspath(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else None,
    }
    write_json(manifest_path, manifest)
    return manifest


def _staged_array(stack, path, shape, dtype):
    """A ``.npy`` memory map of ``shape`` under a temporary name that ``stack`` renames to ``path``
    on success (removes on error). Its blocks are reserved now: without that, running out of disk
    while writing through the map kills the process with SIGBUS instead of raising."""
    tmp = stack.enter_context(atomic_path(path))
    a = open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # atomic_path turns it into DiskFullError naming the path
            # EINVAL / EOPNOTSUPP: this filesystem cannot reserve space; write without it
        finally:
            os.close(fd)
    return a


def read_manifest(root_path):
    path = os.path.join(root_path, "manifest.json")
    if not os.path.isdir(root_path):
        raise FileNotFoundError(f"prepared UDVD directory not found: {root_path}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{root_path} has no manifest.json: not prepared by prepare_udvd, or interrupted")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{VERSION} manifest")
    return manifest


# ---------------------------------------------------------------------------------------------
# datasets

@register("udvd-prepared")
class UDVDPrepared(torch.utils.data.Dataset):
    """Samples written by :func:`prepare_udvd`. ``cache='none'`` memory-maps the arrays (opened
    lazily, once per DataLoader worker; ``'bin'`` means the same: the files are already binary),
    ``'in_memory'`` loads them into RAM. ``augment``: random flips / transposition of LR, HR and the
    kernel, with the code re-projected. Length = count * ``repeat``."""

    def __init__(self, root_path, repeat=1, cache="none", augment=False):
        if cache not in ("none", "bin", "in_memory"):
            raise ValueError(f"cache must be 'none', 'bin' or 'in_memory', got {cache!r}")
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"repeat must be a positive integer, got {repeat!r}")
        self.root_path, self.repeat, self.cache, self.augment = root_path, repeat, cache, augment
        self.manifest = read_manifest(root_path)
        self.count = self.manifest["count"]
        self.pca = deg.load_pca(os.path.join(root_path, self.manifest["pca"]))
        for name, file in self.manifest["arrays"].items():
            if not os.path.isfile(os.path.join(root_path, file)):
                raise FileNotFoundError(f"{root_path}: missing {file}")
        self._arrays = None
        if cache == "in_memory":
            self._arrays = self._open(mmap=False)

    def _open(self, mmap):
        out = {}
        for name, file in self.manifest["arrays"].items():
            a = np.load(os.path.join(self.root_path, file), mmap_mode="r" if mmap else None)
            out[name] = a[:self.count] if mmap else np.ascontiguousarray(a[:self.count])
        return out

    def __getstate__(self):
        # Memory maps are reopened in each worker, not pickled (which would copy them).
        state = dict(self.__dict__)
        if self.cache != "in_memory":
            state["_arrays"] = None
        return state

    def __len__(self):
        return self.count * self.repeat

    def __getitem__(self, idx):
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} samples")
        if self._arrays is None:
            self._arrays = self._open(mmap=True)
        a, j = self._arrays, idx % self.count
        lr = torch.from_numpy(np.array(a["lr"][j], dtype=np.float32))
        hr = torch.from_numpy(np.array(a["hr"][j]))
        hr = hr.float() / 255.0 if hr.dtype == torch.uint8 else hr.float()
        kernel = torch.from_numpy(np.array(a["kernel"][j]))
        level = float(a["noise"][j])
        if not self.augment:
            kmap, nmap = deg.degradation_maps(torch.from_numpy(np.array(a["code"][j])), level, *lr.shape[-2:])
            return {"inp": lr, "kernel": kmap, "noise": nmap, "gt": hr}
        return _item(lr, hr, kernel, level, self.pca, _random_dihedral())


@register("udvd-online")
class UDVDOnline(torch.utils.data.Dataset):
    """Degrades the HR images (float CxHxW tensors) of ``dataset`` on the fly, like KAIR's SRMD
    dataset: for small experiments; the seed warns this is very slow for real training, where
    :func:`prepare_udvd` + ``udvd-prepared`` should be used.

    ``patch_size`` HR pixels (None: the whole modcropped image). ``seed`` None draws fresh
    degradations every time (DataLoader workers get distinct torch seeds); an int fixes item ``i``'s
    degradation to the stream ``(seed, i)`` (a fixed validation set)."""

    def __init__(self, dataset, scale=2, patch_size=96, kernel_kinds=("isotropic",), noise_range=deg.NOISE_RANGE,
                 sigma_range=None, var_range=None, pca=None, augment=False, seed=None, padding="reflect"):
        self.dataset = dataset
        self.pca = _resolve_pca(pca)
        self.sampler = _Sampler(scale, patch_size, kernel_kinds, noise_range, sigma_range, var_range, padding,
                                self.pca)
        self.augment, self.seed = augment, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        img = self.dataset[idx]
        _check_hr(img, f"item {idx} of the wrapped dataset")
        if not self.sampler.fits(*img.shape[-2:]):
            raise ValueError(f"item {idx}: image {tuple(img.shape[-2:])} is smaller than the "
                             f"{self.sampler.patch_size} HR patch")
        g = deg.make_generator(None) if self.seed is None else _seeded(self.seed, idx)
        s = self.sampler(img, g)
        dihedral = _random_dihedral(g) if self.augment else None
        return _item(s["lr"], s["hr"], s["kernel"], s["level"], self.pca, dihedral)
