"""fastliif.metrics against scikit-image (PSNR, SSIM, rgb2ycbcr) and LIIF's calc_psnr formula."""
import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.color import rgb2ycbcr
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fastliif.metrics import psnr, rgb_to_y, shave_for, ssim


def random_pair(seed, n=2, h=41, w=37, noise=0.06, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(n, 3, h, w, generator=g, dtype=dtype)
    sr = (hr + noise * torch.randn(n, 3, h, w, generator=g, dtype=dtype)).clamp(0, 1)
    return sr, hr


def astronaut_pair():
    """A real photograph (a 160x144 crop of skimage's astronaut) and a blurred copy, (1, 3, H, W)."""
    hr = skdata.astronaut()[40:200, 180:324].astype(np.float64) / 255.0
    sr = gaussian(hr, sigma=1.2, channel_axis=-1)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]  # noqa: E731
    return to_t(sr), to_t(hr)


def hwc(x):
    return x.permute(1, 2, 0).numpy()


def sk_y(x):
    """Y (0-255 units) of one CHW image by scikit-image."""
    return rgb2ycbcr(hwc(x))[..., 0]


def crop(a, s):
    return a[s:a.shape[0] - s, s:a.shape[1] - s] if s else a


def sk_psnr(sr, hr, protocol, scale):
    s = shave_for(protocol, scale)
    if protocol == "benchmark":
        return peak_signal_noise_ratio(crop(sk_y(hr), s), crop(sk_y(sr), s), data_range=255)
    return peak_signal_noise_ratio(crop(hwc(hr), s), crop(hwc(sr), s), data_range=1)


def liif_benchmark_psnr(sr, hr, scale):
    """The official calc_psnr('benchmark') formula, written out in numpy."""
    diff = sr.numpy() - hr.numpy()
    gray = (65.738 * diff[0] + 129.057 * diff[1] + 25.064 * diff[2]) / 256
    return -10 * math.log10(np.mean(crop(gray, scale) ** 2))


def sk_ssim(sr, hr, protocol, scale):
    s = shave_for(protocol, scale)
    return structural_similarity(crop(sk_y(hr), s), crop(sk_y(sr), s), data_range=255, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)


def test_rgb_to_y_matches_skimage():
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        x, _ = random_pair(1, n=2, h=13, w=17, dtype=dtype)
        y = rgb_to_y(x)
        assert y.shape == (2, 1, 13, 17) and y.dtype == dtype
        for i in range(2):
            np.testing.assert_allclose(y[i, 0].double().numpy() * 255, sk_y(x[i].double()), atol=tol * 255)
    assert rgb_to_y(x[0]).shape == (1, 13, 17)  # unbatched (3, H, W) works too


@pytest.mark.parametrize("protocol", [None, "div2k", "benchmark"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_psnr_matches_skimage(protocol, scale):
    sr, hr = random_pair(10 + scale, n=3)
    got = psnr(sr, hr, protocol=protocol, scale=scale)
    assert got.shape == (3,)
    for i in range(3):
        # 'benchmark' weights are LIIF's rounding of MATLAB's luma: within 1e-4 dB of skimage's Y.
        assert got[i].item() == pytest.approx(sk_psnr(sr[i], hr[i], protocol, scale), abs=1e-4)
        if protocol == "benchmark":
            assert got[i].item() == pytest.approx(liif_benchmark_psnr(sr[i], hr[i], scale), abs=1e-9)


@pytest.mark.parametrize("protocol", [None, "div2k", "benchmark"])
def test_ssim_matches_skimage(protocol):
    sr, hr = random_pair(20, n=3, h=47, w=44, noise=0.1)
    got = ssim(sr, hr, protocol=protocol, scale=3)
    assert got.shape == (3,)
    for i in range(3):
        assert got[i].item() == pytest.approx(sk_ssim(sr[i], hr[i], protocol, 3), abs=1e-9)


@pytest.mark.parametrize("protocol,scale", [("benchmark", 4), ("div2k", 2), (None, 1)])
def test_real_image_matches_skimage(protocol, scale):
    sr, hr = astronaut_pair()
    p, s = psnr(sr, hr, protocol, scale).item(), ssim(sr, hr, protocol, scale).item()
    assert 20 < p < 40 and 0.5 < s < 0.99  # a blurred photo: a realistic, non-trivial pair
    assert p == pytest.approx(sk_psnr(sr[0], hr[0], protocol, scale), abs=1e-4)
    assert s == pytest.approx(sk_ssim(sr[0], hr[0], protocol, scale), abs=1e-9)
    # float32 inputs (what models produce) agree to float32 precision
    assert psnr(sr.float(), hr.float(), protocol, scale).item() == pytest.approx(p, abs=1e-3)
    assert ssim(sr.float(), hr.float(), protocol, scale).item() == pytest.approx(s, abs=1e-5)


def test_batch_equals_per_image():
    sr, hr = random_pair(30, n=4, h=35, w=40)
    for fn in (psnr, ssim):
        for protocol in (None, "div2k", "benchmark"):
            batched = fn(sr, hr, protocol, 2)
            single = torch.cat([fn(sr[i:i + 1], hr[i:i + 1], protocol, 2) for i in range(4)])
            torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    _, hr = random_pair(40, n=2, h=30, w=33)
    for protocol in (None, "div2k", "benchmark"):
        assert torch.isinf(psnr(hr, hr.clone(), protocol, 2)).all()
        torch.testing.assert_close(ssim(hr, hr.clone(), protocol, 2), torch.ones(2, dtype=torch.float64))


def test_one_channel_is_taken_as_luma():
    sr, hr = random_pair(50, n=2, h=30, w=30)
    ysr, yhr = rgb_to_y(sr), rgb_to_y(hr)
    torch.testing.assert_close(ssim(ysr, yhr, "benchmark", 2), ssim(sr, hr, "benchmark", 2))
    # LIIF's weights / 256 round MATLAB's / 255: the same luma difference to 1e-4 dB
    torch.testing.assert_close(psnr(ysr, yhr, "benchmark", 2), psnr(sr, hr, "benchmark", 2), rtol=0, atol=1e-4)


def test_shave_widths():
    assert [shave_for("benchmark", s) for s in (2, 3, 4, 12)] == [2, 3, 4, 12]
    assert [shave_for("div2k", s) for s in (2, 3, 4, 12)] == [8, 9, 10, 18]
    assert shave_for("benchmark", 2.5) == 3 and shave_for("div2k", 2.5) == 9  # fractional: rounded up
    assert shave_for(None, 4) == 0
    sr, hr = random_pair(60, n=1, h=30, w=31)
    # a fractional scale shaves like the next integer
    torch.testing.assert_close(psnr(sr, hr, "benchmark", 2.5), psnr(sr, hr, "benchmark", 3))


def test_errors():
    sr, hr = random_pair(70, n=2, h=30, w=30)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match="shapes differ"):
            fn(sr, hr[:, :, :29])
        with pytest.raises(ValueError, match="4-D"):
            fn(sr[0], hr[0])
        with pytest.raises(ValueError, match="empty"):
            fn(sr[:0], hr[:0])
        bad = sr.clone()
        bad[1, 0, 3, 4] = float("nan")
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(bad, hr)
        bad[1, 0, 3, 4] = float("inf")
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(sr, bad)
        with pytest.raises(TypeError, match="floating"):
            fn((sr * 255).to(torch.uint8), (hr * 255).to(torch.uint8))
        with pytest.raises(ValueError, match="1 or 3 channels"):
            fn(sr[:, :2], hr[:, :2])
        with pytest.raises(ValueError, match="unknown protocol"):
            fn(sr, hr, protocol="set5")
        for scale in (0, -2, float("nan")):
            with pytest.raises(ValueError, match="positive finite"):
                fn(sr, hr, protocol="benchmark", scale=scale)
    with pytest.raises(ValueError, match="too small"):
        psnr(sr, hr, "div2k", 9)  # 30 - 2 * 15 = 0 pixels left
    with pytest.raises(ValueError, match="too small"):
        ssim(sr, hr, "benchmark", 10)  # 10 pixels left, the window needs 11
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        rgb_to_y(sr[:, :1])
