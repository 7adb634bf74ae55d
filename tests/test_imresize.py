"""fastliif.data.imresize against an independent float64 loop of MATLAB's contributions formula,
published MATLAB output, analytic properties and PIL."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastliif.data.imresize import imresize, resize_weights, weight_matrix


# ---- independent reference: one output pixel at a time, plain Python floats ------------------

def _keys(t):
    t = abs(t)
    if t <= 1:
        return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
    if t <= 2:
        return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
    return 0.0


def _mirror(p, n):
    # 1-based position -> in-range position, reflecting about the outer pixel edges (edge repeated)
    while p < 1 or p > n:
        p = 1 - p if p < 1 else 2 * n + 1 - p
    return p


def _resize_1d_loop(a, out_len, scale, antialias):
    """Resize axis 0 of a float64 array as MATLAB imresize's contributions() + resizeAlongDim."""
    n = a.shape[0]
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    out = np.zeros((out_len,) + a.shape[1:])
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        ws = [scale * _keys(scale * (u - p)) if shrink else _keys(u - p) for p in taps]
        total = sum(ws)
        for p, w in zip(taps, ws):
            out[x - 1] += (w / total) * a[_mirror(p, n) - 1]
    return out


def _ref(img, out_hw, scales, antialias=True):
    """img: (C, H, W) float64 numpy."""
    a = np.moveaxis(img, 0, -1)                                # H, W, C
    a = _resize_1d_loop(a, out_hw[0], scales[0], antialias)
    a = np.moveaxis(_resize_1d_loop(np.moveaxis(a, 1, 0), out_hw[1], scales[1], antialias), 0, 1)
    return np.moveaxis(a, -1, 0)


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)


# ---- agreement with the loop reference ----------------------------------------------------------

@pytest.mark.parametrize("hw,scale", [
    ((12, 16), 1 / 2), ((13, 17), 1 / 3), ((16, 20), 1 / 4), ((9, 14), 0.7),
    ((5, 7), 2), ((4, 6), 3), ((7, 5), 1.5), ((10, 12), (0.5, 2.0)), ((11, 9), (3.0, 0.25)),
])
@pytest.mark.parametrize("antialias", [True, False])
def test_matches_loop_reference_scale(hw, scale, antialias):
    x = _rand(3, *hw, seed=hw[0] * 100 + hw[1])
    y = imresize(x, scale=scale, antialias=antialias)
    s = scale if isinstance(scale, tuple) else (scale, scale)
    out_hw = tuple(math.ceil(n * f - 1e-9) for n, f in zip(hw, s))
    assert y.shape == (3,) + out_hw
    ref = _ref(x.numpy(), out_hw, s, antialias)
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("hw,size", [((12, 16), (5, 7)), ((7, 9), (15, 4)), ((6, 6), 13), ((10, 3), (10, 8))])
def test_matches_loop_reference_size(hw, size):
    x = _rand(2, *hw, seed=7)
    y = imresize(x, size=size)
    out_hw = size if isinstance(size, tuple) else (size, size)
    assert y.shape == (2,) + tuple(out_hw)
    ref = _ref(x.numpy(), out_hw, (out_hw[0] / hw[0], out_hw[1] / hw[1]))
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-12)


def test_published_matlab_upscale_values():
    # MATLAB's own output quoted on Stack Overflow (q. 17380407, 2013):
    #   imresize([0 0 1 1 0], [1, 10])  (bicubic default)
    #   -> 0 -0.0234 -0.0703 0.2031 0.7969 1.0938 1.0938 0.7969 0.2031 -0.0703
    # The first nine match. The last one differs: MATLAB of that time clamped out-of-range taps
    # (replicate padding, giving -0.0703) while current MATLAB, and this module, mirror them
    # (symmetric padding: the tap past the end reads the 1, giving -0.0938).
    x = torch.tensor([[[0.0, 0, 1, 1, 0]]], dtype=torch.float64)
    y = imresize(x, size=(1, 10))[0, 0]
    published = [0, -0.0234, -0.0703, 0.2031, 0.7969, 1.0938, 1.0938, 0.7969, 0.2031]
    np.testing.assert_allclose(y[:9].numpy(), published, atol=5e-5)
    assert abs(y[9].item() - (-0.09375)) < 1e-12


def test_published_octave_values_no_antialias():
    # Octave image package (whose imresize follows MATLAB's) as quoted in a public script:
    #   imresize(reshape(0:15,4,4)', 0.5, 'bicubic', 'AntiAliasing', false)
    #   -> [2.1875 4.3125; 10.6875 12.8125]
    # No published MATLAB output for a tiny antialiased downscale was found; that case is covered
    # by the loop reference above.
    x = torch.arange(16, dtype=torch.float64).view(1, 4, 4)
    y = imresize(x, 0.5, antialias=False)[0]
    np.testing.assert_allclose(y.numpy(), [[2.1875, 4.3125], [10.6875, 12.8125]], atol=1e-12)


# ---- analytic properties ------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.6, 1.7, 4])
def test_constant_stays_constant(scale):
    c = 0.3 + 0.4 * _rand(1, seed=3).item()
    x = torch.full((3, 11, 14), c, dtype=torch.float64)
    y = imresize(x, scale)
    assert torch.allclose(y, torch.full_like(y, c), atol=1e-12, rtol=0)


def test_scale_one_is_identity():
    x = _rand(2, 3, 9, 13, seed=4)
    assert torch.allclose(imresize(x, 1), x, atol=1e-14, rtol=0)
    assert torch.allclose(imresize(x, size=(9, 13)), x, atol=1e-14, rtol=0)


def test_upscale_x2_linear_ramp_interior_is_exact():
    # Keys' kernel reproduces linear functions; output pixel j (1-based) samples u = j/2 + 1/4.
    a, b, c = _rand(3, seed=5).tolist()
    h, w = 10, 12
    i = torch.arange(1, h + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, w + 1, dtype=torch.float64)[None, :]
    x = (a * i + b * j + c)[None]
    y = imresize(x, 2)[0]
    ui = torch.arange(1, 2 * h + 1, dtype=torch.float64)[:, None] / 2 + 0.25
    uj = torch.arange(1, 2 * w + 1, dtype=torch.float64)[None, :] / 2 + 0.25
    expect = a * ui + b * uj + c
    # 2 output pixels per input pixel: stay 2 input pixels (4 outputs) away from the mirrored border
    assert torch.allclose(y[4:-4, 4:-4], expect[4:-4, 4:-4], atol=1e-12, rtol=0)


@pytest.mark.parametrize("hw,scale,expect", [
    ((7, 9), 0.5, (4, 5)), ((10, 11), 1 / 3, (4, 4)), ((480, 480), 1 / 3, (160, 160)),
    ((10, 10), 1.1, (11, 11)), ((5, 3), 0.01, (1, 1)), ((3, 4), 2.5, (8, 10)),
])
def test_output_shape_is_ceil(hw, scale, expect):
    assert imresize(_rand(1, *hw, seed=6), scale).shape[-2:] == expect


def test_weight_rows_sum_to_one_and_factorisation():
    x = _rand(2, 3, 13, 10, seed=8)
    wh, ww = resize_weights((13, 10), scale=(0.5, 1.5))
    assert torch.allclose(wh.sum(1), torch.ones(wh.shape[0], dtype=torch.float64), atol=1e-14)
    assert torch.allclose(ww.sum(1), torch.ones(ww.shape[0], dtype=torch.float64), atol=1e-14)
    assert torch.allclose(wh @ x @ ww.t(), imresize(x, scale=(0.5, 1.5)), atol=1e-14)
    # The helper hands out copies: editing one never changes later resizes.
    m = weight_matrix(13, scale=0.5)
    m.zero_()
    assert torch.allclose(imresize(x, scale=(0.5, 1.5)), wh @ x @ ww.t(), atol=1e-14)


# ---- PIL, batching, dtypes ----------------------------------------------------------------------

def test_close_to_pil_bicubic_upscale_but_not_identical():
    # PIL's BICUBIC is the same Keys a=-0.5 kernel with the same pixel-centre mapping, so away from
    # the borders an upscale agrees to float32 precision ('F' mode avoids 8-bit rounding). At the
    # borders PIL drops out-of-range taps and renormalises, MATLAB mirrors: they differ there.
    a = _rand(9, 11, seed=9, dtype=torch.float32).numpy()
    pil = np.asarray(Image.fromarray(a, mode="F").resize((22, 18), Image.BICUBIC))
    ours = imresize(torch.from_numpy(a)[None], 2)[0].numpy()
    assert np.abs(pil - ours)[3:-3, 3:-3].max() < 1e-5
    assert np.abs(pil - ours).max() > 1e-3


def test_batch_equals_per_image():
    x = _rand(4, 3, 15, 12, seed=10, dtype=torch.float32)
    y = imresize(x, 1 / 3)
    for k in range(4):
        assert torch.allclose(y[k], imresize(x[k], 1 / 3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_dtypes_keep_dtype_and_agree(dtype, tol):
    x = _rand(3, 12, 14, seed=11)
    y = imresize(x.to(dtype), 0.5)
    assert y.dtype == dtype
    assert torch.allclose(y.double(), imresize(x, 0.5), atol=tol, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = _rand(2, 3, 20, 18, seed=12, dtype=torch.float32)
    y = imresize(x.cuda(), 0.25)
    assert y.is_cuda
    assert torch.allclose(y.cpu(), imresize(x, 0.25), atol=1e-5, rtol=0)


# ---- errors -------------------------------------------------------------------------------------

def test_errors():
    x = _rand(3, 8, 8, seed=13)
    with pytest.raises(ValueError, match="exactly one of scale or size"):
        imresize(x)
    with pytest.raises(ValueError, match="exactly one of scale or size"):
        imresize(x, scale=2, size=(4, 4))
    for bad in (0, -1, float("nan"), float("inf"), "2", True):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            imresize(x, scale=bad)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        imresize(x, size=(0, 4))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        imresize(x, size=(2.5, 4))
    with pytest.raises(ValueError, match=r"pair \(h, w\)"):
        imresize(x, scale=(1, 2, 3))
    with pytest.raises(ValueError, match="CxHxW or BxCxHxW"):
        imresize(x[0], 2)
    with pytest.raises(ValueError, match="empty tensor"):
        imresize(torch.empty(3, 0, 5), 2)
    with pytest.raises(TypeError, match="float tensor"):
        imresize(torch.ones(3, 4, 4, dtype=torch.uint8), 2)
    with pytest.raises(TypeError, match="torch tensor"):
        imresize(np.ones((3, 4, 4)), 2)
    y = x.clone()
    y[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        imresize(y, 0.5)
