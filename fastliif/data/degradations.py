"""SRMD / UDVD degradations: Gaussian blur kernels, their PCA code, and blur -> bicubic x s -> noise.

The degradation model (SRMD, followed by UDVD) is ``y = (x * k) downsampled by s + n``:

* ``k``: a ``size x size`` Gaussian blur kernel (``size = 15``), normalised to sum 1.
  UDVD trains with isotropic kernels only; SRMD adds anisotropic ones. Default ranges, from the
  SRMD paper (the UDVD seed's own numbers were lost from its formulas; UDVD says it follows SRMD):

  - isotropic width ``sigma`` uniform in ``[0.2, 2]``, ``[0.2, 3]``, ``[0.2, 4]`` for x2, x3, x4;
  - anisotropic: angle ``theta`` uniform in ``[0, pi)``, the two covariance eigenvalues
    (variances ``sigma_x**2 >= sigma_y**2``) uniform in ``[0.5, 6]``, ``[0.5, 8]``, ``[0.5, 10]``.

* blur: true convolution (the kernel is flipped for ``conv2d``; Gaussians are point symmetric, so
  this only matters for user kernels), one kernel for all channels, ``'reflect'`` padding by default
  (mirror without repeating the edge pixel; ``'replicate'`` / ``'circular'`` selectable).
* downsampling: MATLAB-style bicubic ``imresize`` (antialiased) by an integer factor, through
  :func:`fastliif.data.resize.resize` (``method='matlab'``).
* noise: additive white Gaussian noise of std ``noise_level / 255`` (``noise_level`` in 0-255 units,
  training range ``[0, 75]``), independent per pixel and channel.
* clamping: none by default. Bicubic overshoot and noise may leave ``[0, 1]`` slightly; clipping
  would make the real noise weaker than the noise map says near black and white (KAIR's SRMD
  dataset does not clip either). ``clamp=True`` clips the final LR to ``[0, 1]``.

The network does not see ``k`` itself but its projection on the top ``dim = 15`` principal
components (SRMD's "dimensionality stretching"): :func:`project_kernel`. The PCA follows SRMD's
code (KAIR ``utils_sisr.cal_pca_matrix``): 225-vectors of random anisotropic kernels (variances
``l1 ~ U(0.1, 12.1)``, ``l2 ~ U(0.1, l1)``, ``theta ~ U(0, pi)``), **uncentred** (eigenvectors of
``X X^T``, no mean subtraction, so a kernel is approximated by ``P^T P k`` and its code is just
``P k``), kernels vectorised in **column-major** order as MATLAB does (so SRMD/KAIR PCA matrices,
saved with :func:`save_pca`, apply unchanged). With 15 components, kernels from the x2 ranges come
back within a few percent (relative L2); widths above about 3.5 (variance > 12.1, beyond the PCA's
samples) much less well.
:func:`default_pca` computes this matrix once, saves it under the cache directory
(``$FASTLIIF_CACHE`` or ``~/.cache/fastliif``) and reuses the file afterwards.

The network inputs are spatially uniform maps: ``code`` broadcast to ``(15, h, w)`` and the noise
std ``noise_level / 255`` broadcast to ``(1, h, w)`` (SRMD's convention: the map holds the noise
std in the image's own [0, 1] units).
"""
import math
import os
import pickle
import warnings

import numpy as np
import torch
import torch.nn.functional as F

KERNEL_SIZE = 15
PCA_DIM = 15
NOISE_RANGE = (0.0, 75.0)
KERNEL_KINDS = ("isotropic", "anisotropic")
# SRMD training ranges by scale: isotropic std, anisotropic covariance eigenvalues (variances).
ISO_SIGMA_RANGES = {2: (0.2, 2.0), 3: (0.2, 3.0), 4: (0.2, 4.0)}
ANISO_VAR_RANGES = {2: (0.5, 6.0), 3: (0.5, 8.0), 4: (0.5, 10.0)}
# KAIR's PCA sampling: l1 = 0.1 + 12 * U, l2 = 0.1 + (l1 - 0.1) * U.
PCA_VAR_RANGE = (0.1, 12.1)
PCA_SAMPLES = 10000
PCA_SEED = 0
PADDING_MODES = ("reflect", "replicate", "circular")


# ---------------------------------------------------------------------------------------------
# kernels

def _check_size(size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer (the kernel needs a centre pixel), got {size!r}")
    return int(size)


def _check_positive(name, value):
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _gaussian_kernels(size, sigma_x, sigma_y, theta):
    """Batch of normalised Gaussian kernels (n, size, size), float64. Row offset y (downwards),
    column offset x; the axis with std ``sigma_x`` points at angle ``theta`` from the x axis
    towards the y axis: ``k ~ exp(-(u^2 / sx^2 + v^2 / sy^2) / 2)`` with
    ``u = x cos(theta) + y sin(theta)``, ``v = -x sin(theta) + y cos(theta)``."""
    sx = torch.as_tensor(sigma_x, dtype=torch.float64).reshape(-1, 1, 1)
    sy = torch.as_tensor(sigma_y, dtype=torch.float64).reshape(-1, 1, 1)
    th = torch.as_tensor(theta, dtype=torch.float64).reshape(-1, 1, 1)
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = r.view(1, -1, 1), r.view(1, 1, -1)
    c, s = torch.cos(th), torch.sin(th)
    u = x * c + y * s
    v = -x * s + y * c
    k = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def isotropic_gaussian_kernel(size=KERNEL_SIZE, sigma=1.0):
    """``size x size`` isotropic Gaussian blur kernel (std ``sigma`` pixels), float64, sums to 1."""
    size = _check_size(size)
    sigma = _check_positive("sigma", sigma)
    return _gaussian_kernels(size, sigma, sigma, 0.0)[0]


def anisotropic_gaussian_kernel(size=KERNEL_SIZE, sigma_x=2.0, sigma_y=1.0, theta=0.0):
    """``size x size`` anisotropic Gaussian: std ``sigma_x`` along the axis at angle ``theta``
    (radians, from the column axis towards the row axis), std ``sigma_y`` across it. float64, sums to 1."""
    size = _check_size(size)
    sigma_x = _check_positive("sigma_x", sigma_x)
    sigma_y = _check_positive("sigma_y", sigma_y)
    theta = float(theta)
    if not math.isfinite(theta):
        raise ValueError(f"theta must be finite, got {theta}")
    return _gaussian_kernels(size, sigma_x, sigma_y, theta)[0]


def _uniform(generator, low, high):
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def _range(name, value):
    low, high = (float(v) for v in value)
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {tuple(value)}")
    return low, high


def _default_range(table, scale, what):
    if scale not in table:
        raise ValueError(f"no default {what} for scale {scale} (SRMD gives x2, x3, x4); pass it explicitly")
    return table[scale]


def make_generator(seed=None):
    """A CPU ``torch.Generator``: seeded when ``seed`` is an int, else from torch's global RNG."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    if seed is None:
        g.manual_seed(int(torch.randint(0, 2 ** 62, ()).item()))
    else:
        g.manual_seed(int(seed))
    return g


def sample_kernel_params(generator=None, kind="isotropic", scale=2, sigma_range=None, var_range=None):
    """Random kernel parameters ``{'kind', 'sigma_x', 'sigma_y', 'theta'}`` (stds in pixels).

    ``kind``: 'isotropic' (``sigma ~ U(sigma_range)``) or 'anisotropic' (``theta ~ U(0, pi)``,
    variances ``l1 >= l2`` uniform in ``var_range``: ``l1 ~ U(var_range)``, ``l2 ~ U(low, l1)``).
    Ranges default to SRMD's for ``scale`` (see the module doc)."""
    generator = make_generator(generator)
    if kind == "isotropic":
        low, high = _range("sigma_range", sigma_range or _default_range(ISO_SIGMA_RANGES, scale, "sigma range"))
        if low <= 0:
            raise ValueError(f"sigma_range must be > 0, got {(low, high)}")
        sigma = _uniform(generator, low, high)
        return {"kind": kind, "sigma_x": sigma, "sigma_y": sigma, "theta": 0.0}
    if kind == "anisotropic":
        low, high = _range("var_range", var_range or _default_range(ANISO_VAR_RANGES, scale, "variance range"))
        if low <= 0:
            raise ValueError(f"var_range must be > 0, got {(low, high)}")
        theta = _uniform(generator, 0.0, math.pi)
        l1 = _uniform(generator, low, high)
        l2 = _uniform(generator, low, l1)
        return {"kind": kind, "sigma_x": math.sqrt(l1), "sigma_y": math.sqrt(l2), "theta": theta}
    raise ValueError(f"kernel kind must be one of {KERNEL_KINDS}, got {kind!r}")


def kernel_from_params(params, size=KERNEL_SIZE):
    """The kernel that :func:`sample_kernel_params` describes."""
    return anisotropic_gaussian_kernel(size, params["sigma_x"], params["sigma_y"], params["theta"])


def random_kernel(generator=None, kind="isotropic", scale=2, size=KERNEL_SIZE, sigma_range=None, var_range=None):
    """A random ``size x size`` Gaussian kernel (float64) from SRMD's ranges; ``generator`` is a
    ``torch.Generator`` or an int seed (same seed -> same kernel)."""
    size = _check_size(size)
    return kernel_from_params(sample_kernel_params(generator, kind, scale, sigma_range, var_range), size)


def random_noise_level(generator=None, noise_range=NOISE_RANGE):
    """Noise level (0-255 units) uniform in ``noise_range`` (SRMD: [0, 75])."""
    low, high = _range("noise_range", noise_range)
    return _uniform(make_generator(generator), low, high)


# ---------------------------------------------------------------------------------------------
# PCA

def _vec(kernel):
    """(..., k, k) -> (..., k*k) in column-major (MATLAB) order, as SRMD's PCA matrices expect."""
    return kernel.transpose(-1, -2).reshape(*kernel.shape[:-2], -1)


def _unvec(v, size):
    return v.reshape(*v.shape[:-1], size, size).transpose(-1, -2)


def compute_pca(n_samples=PCA_SAMPLES, dim=PCA_DIM, seed=PCA_SEED, size=KERNEL_SIZE, var_range=PCA_VAR_RANGE):
    """SRMD's kernel PCA: ``(dim, size*size)`` float64 matrix with orthonormal rows.

    Rows are the top ``dim`` left singular vectors of the uncentred matrix of ``n_samples`` random
    anisotropic kernels (KAIR ``cal_pca_matrix``), column-major vectorised. Each row's sign is fixed
    (positive dot product with a ramp) so the same seed gives the same matrix."""
    size = _check_size(size)
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not isinstance(dim, (int, np.integer)) or not 1 <= dim <= min(size * size, n_samples):
        raise ValueError(f"dim must be in [1, min(size*size, n_samples)] = [1, {min(size * size, n_samples)}], got {dim!r}")
    low, high = _range("var_range", var_range)
    if low <= 0:
        raise ValueError(f"var_range must be > 0, got {(low, high)}")
    g = make_generator(seed)
    u = torch.rand(3, n_samples, generator=g, dtype=torch.float64)
    theta = math.pi * u[0]
    l1 = low + (high - low) * u[1]
    l2 = low + (l1 - low) * u[2]
    x = _vec(_gaussian_kernels(size, l1.sqrt(), l2.sqrt(), theta)).T  # (size*size, n)
    basis, _, _ = torch.linalg.svd(x, full_matrices=False)
    p = basis[:, :dim].T.contiguous()
    ramp = torch.linspace(1.0, 2.0, p.shape[1], dtype=torch.float64)
    sign = torch.where(p @ ramp < 0, -1.0, 1.0).to(torch.float64)
    return p * sign[:, None]


def _check_pca(pca):
    if not isinstance(pca, torch.Tensor) or pca.dim() != 2:
        raise ValueError(f"PCA matrix must be a 2-D tensor (dim, size*size), got "
                         f"{type(pca).__name__ if not isinstance(pca, torch.Tensor) else tuple(pca.shape)}")
    size = math.isqrt(pca.shape[1])
    if size * size != pca.shape[1] or size % 2 == 0:
        raise ValueError(f"PCA matrix columns must be size*size for an odd kernel size, got {pca.shape[1]}")
    return size


def save_pca(pca, path, **meta):
    """Save a PCA matrix (``torch.save`` of ``{'pca': matrix, **meta}``) through :mod:`fastliif.atomic`."""
    from ..atomic import save_torch
    _check_pca(pca)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_torch({"pca": pca.detach().cpu().to(torch.float64), **meta}, path)


def load_pca(path):
    """Load a matrix written by :func:`save_pca` (float64, ``(dim, size*size)``). Only tensors are
    unpickled (``weights_only``); any other file is a one-line ValueError naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PCA file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes: the outcome is reported below
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: not a PCA file: it pickles Python objects other than tensors "
                         f"(refused, nothing in it was run)") from None
    except Exception as exc:  # empty, truncated or foreign file
        raise ValueError(f"{path}: not a PCA file written by save_pca (empty, truncated or another format: "
                         f"{type(exc).__name__})") from None
    pca = obj.get("pca") if isinstance(obj, dict) else obj
    try:
        _check_pca(pca)
    except ValueError as exc:
        raise ValueError(f"{path}: not a PCA file: {exc}") from None
    return pca.to(torch.float64)


def cache_dir():
    """``$FASTLIIF_CACHE`` if set, else ``~/.cache/fastliif``."""
    return os.environ.get("FASTLIIF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastliif")


def default_pca_path(n_samples=PCA_SAMPLES, dim=PCA_DIM, seed=PCA_SEED, size=KERNEL_SIZE):
    return os.path.join(cache_dir(), f"srmd_pca_k{size}_d{dim}_n{n_samples}_s{seed}.pt")


def default_pca(n_samples=PCA_SAMPLES, dim=PCA_DIM, seed=PCA_SEED, size=KERNEL_SIZE):
    """The standard kernel PCA: computed once by :func:`compute_pca`, saved to
    :func:`default_pca_path` (under :func:`cache_dir`), loaded from that file on later calls."""
    path = default_pca_path(n_samples, dim, seed, size)
    if os.path.isfile(path):
        return load_pca(path)
    pca = compute_pca(n_samples, dim, seed, size)
    save_pca(pca, path, n_samples=n_samples, seed=seed, var_range=PCA_VAR_RANGE, order="column-major",
             centred=False)
    return pca


def project_kernel(kernel, pca):
    """Kernel(s) ``(..., k, k)`` -> PCA code ``(..., dim)`` = ``P @ vec(k)`` (uncentred, column-major)."""
    size = _check_pca(pca)
    if not isinstance(kernel, torch.Tensor):
        kernel = torch.as_tensor(kernel)
    if kernel.dim() < 2 or kernel.shape[-2:] != (size, size):
        raise ValueError(f"kernel must be (..., {size}, {size}) to match the PCA matrix, got {tuple(kernel.shape)}")
    return _vec(kernel.to(pca.dtype)) @ pca.T


def reconstruct_kernel(code, pca):
    """PCA code ``(..., dim)`` -> kernel ``(..., k, k)`` = ``P^T code`` (the projection's best approximation)."""
    size = _check_pca(pca)
    code = torch.as_tensor(code)
    if code.dim() < 1 or code.shape[-1] != pca.shape[0]:
        raise ValueError(f"code must be (..., {pca.shape[0]}), got {tuple(code.shape)}")
    return _unvec(code.to(pca.dtype) @ pca, size)


# ---------------------------------------------------------------------------------------------
# degradation

def _downsample(x, scale):
    """MATLAB-style bicubic downsampling by an integer factor."""
    from .resize import resize
    return resize(x, (x.shape[-2] // scale, x.shape[-1] // scale), method="matlab")


def blur(x, kernel, padding="reflect"):
    """Convolve every channel of ``x`` (C,H,W) or (N,C,H,W) with ``kernel`` (k,k), same size out."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    k = kernel.shape[-1]
    p = k // 2
    batched = x.dim() == 4
    xb = x if batched else x[None]
    n, c, h, w = xb.shape
    if padding == "reflect" and (h <= p or w <= p):
        raise ValueError(f"reflect padding of a {k}x{k} kernel needs an image larger than {p}x{p}, got {h}x{w}; "
                         f"use padding='replicate'")
    weight = kernel.to(dtype=x.dtype, device=x.device).flip(-2, -1).expand(c, 1, k, k)
    y = F.conv2d(F.pad(xb, (p, p, p, p), mode=padding), weight, groups=c)
    return y if batched else y[0]


def _check_image(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"{name} must be (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in [0, 1], got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")


def degrade(hr, kernel, scale=2, noise_level=0.0, generator=None, padding="reflect", clamp=False):
    """SRMD degradation of ``hr`` (C,H,W) or (N,C,H,W) float in [0, 1]: blur with ``kernel`` (k,k),
    MATLAB bicubic downsampling by ``scale`` (H, W must be multiples of it), then Gaussian noise of
    std ``noise_level / 255`` drawn from ``generator`` (torch.Generator or int seed; None = global RNG).
    No clamping unless ``clamp=True`` (see the module doc). Returns the LR in ``hr``'s dtype and layout."""
    _check_image(hr, "hr")
    kernel = torch.as_tensor(kernel)
    if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be a square (k, k) tensor with odd k, got shape {tuple(kernel.shape)}")
    if not torch.isfinite(kernel).all():
        raise ValueError("kernel contains NaN or Inf")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    noise_level = float(noise_level)
    if not math.isfinite(noise_level) or noise_level < 0:
        raise ValueError(f"noise_level must be a finite number >= 0 (0-255 units), got {noise_level}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of scale {scale}; crop it first (modcrop)")
    lr = _downsample(blur(hr, kernel, padding), int(scale)) if scale > 1 else blur(hr, kernel, padding)
    if noise_level > 0:
        g = make_generator(generator)
        noise = torch.randn(lr.shape, generator=g, dtype=lr.dtype, device=g.device)
        lr = lr + noise.to(lr.device) * (noise_level / 255.0)
    return lr.clamp(0, 1) if clamp else lr


# ---------------------------------------------------------------------------------------------
# network inputs

def degradation_maps(code, noise_level, h, w):
    """Spatially uniform maps: ``code`` (dim,) -> (dim, h, w); ``noise_level`` (0-255) -> (1, h, w)
    filled with ``noise_level / 255``. float32."""
    code = torch.as_tensor(code, dtype=torch.float32)
    if code.dim() != 1:
        raise ValueError(f"code must be a 1-D PCA code (dim,), got shape {tuple(code.shape)}")
    noise_level = float(noise_level)
    if not math.isfinite(noise_level) or noise_level < 0:
        raise ValueError(f"noise_level must be a finite number >= 0 (0-255 units), got {noise_level}")
    if h < 1 or w < 1:
        raise ValueError(f"map size must be positive, got {h}x{w}")
    kmap = code.view(-1, 1, 1).expand(-1, h, w).contiguous()
    nmap = torch.full((1, h, w), noise_level / 255.0, dtype=torch.float32)
    return kmap, nmap


def udvd_input(lr, code, noise_level):
    """SRMD/UDVD 19-channel input ``cat([lr (3), code map (15), noise map (1)])``: ``lr`` (3,h,w)
    with ``code`` (15,) and a scalar level, or ``lr`` (N,3,h,w) with ``code`` (N,15) and levels (N,)."""
    _check_image(lr, "lr")
    code = torch.as_tensor(code, dtype=torch.float32)
    levels = torch.as_tensor(noise_level, dtype=torch.float32)
    if lr.dim() == 3:
        kmap, nmap = degradation_maps(code, float(levels), *lr.shape[-2:])
        return torch.cat([lr.float(), kmap.to(lr.device), nmap.to(lr.device)], 0)
    n = lr.shape[0]
    if code.shape[:1] != (n,) or code.dim() != 2:
        raise ValueError(f"batched lr (N={n}) needs code of shape (N, dim), got {tuple(code.shape)}")
    levels = levels.expand(n) if levels.dim() == 0 else levels
    if levels.shape != (n,):
        raise ValueError(f"batched lr (N={n}) needs N noise levels, got shape {tuple(levels.shape)}")
    maps = [torch.cat(degradation_maps(code[i], float(levels[i]), *lr.shape[-2:]), 0) for i in range(n)]
    return torch.cat([lr.float(), torch.stack(maps).to(lr.device)], 1)
