"""Drop-in fused UDVD: the seed's constructors, attribute names and state_dict keys.

``PixelConv`` runs :func:`fastliif.ops.dynamic_conv`; ``UpDynamicConv``, ``CommonDynamicConv``
and ``UDVD`` are the reference modules with that ``pixel_conv``. PixelConv has no parameters,
so state_dicts load both ways between the fused and the reference models.
"""
import math

from ..models import register
from ..ops import dynamic_conv
from ..reference import udvd as _ref
from ..reference.dynamic_conv import PixelConv as ReferencePixelConv
from .liif import check_options


def pixel_conv_geometry(feature, kernel, scale, depthwise):
    """(kernel_size, mode) of the op for the seed's PixelConv(scale, depthwise) on these tensors.

    Raises ValueError where the seed's PixelConv is not defined: non-depthwise with more than one
    feature channel, or kernel channels that are not k*k*s*s for an odd k.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"PixelConv: scale must be a positive integer, got {scale!r}")
    for name, t in (("feature", feature), ("kernel", kernel)):
        if getattr(t, "dim", None) is None or t.dim() != 4:
            raise ValueError(f"PixelConv: {name} must be a 4-D tensor, got {getattr(t, 'shape', type(t).__name__)}")
    channels, kc = feature.shape[1], kernel.shape[1]
    if depthwise:
        mode = "shared"
    else:
        if channels != 1:  # the seed's matmul only lines up for one channel
            raise ValueError(f"PixelConv(depthwise=False) is defined for 1-channel features only, got {channels}; "
                             "use fastliif.ops.dynamic_conv(mode='per_channel') for per-channel kernels")
        mode = "per_channel"  # with C = 1 this is the seed's non-depthwise case (and equals shared)
    taps = kc // (scale * scale)
    k = math.isqrt(taps)
    if k * k * scale * scale != kc or k % 2 == 0:
        raise ValueError(f"PixelConv: kernel has {kc} channels, not k*k*s*s with an odd k for scale {scale}")
    return k, mode


def fused_pixel_conv(feature, kernel, scale, depthwise, backend="auto"):
    """The seed's PixelConv.forward through the fused op."""
    k, mode = pixel_conv_geometry(feature, kernel, scale, depthwise)
    return dynamic_conv(feature, kernel, kernel_size=k, scale=scale, mode=mode, backend=backend)


class PixelConv(ReferencePixelConv):
    """``PixelConv(scale=2, depthwise=False, backend="auto")`` running the fused dynamic convolution.

    ``forward(feature, kernel)``: feature (N, C, H, W), kernel (N, k*k*s*s, H, W) with the seed's
    channel order; returns (N, C, H*s, W*s). Non-depthwise needs C == 1, as in the seed.
    """

    def __init__(self, scale=2, depthwise=False, backend="auto"):
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"PixelConv: scale must be a positive integer, got {scale!r}")
        check_options("PixelConv", backend, depthwise=depthwise)
        super().__init__(scale, depthwise)
        self.backend = backend

    def forward(self, feature, kernel):
        return fused_pixel_conv(feature, kernel, self.scale, self.depthwise, backend=self.backend)

    def extra_repr(self):
        return f"scale={self.scale}, depthwise={self.depthwise}, backend={self.backend!r}"


class _BackendMixin:
    """``backend`` of every fused PixelConv below the module (reading gives a sorted list if they differ)."""

    @property
    def backend(self):
        backends = {m.backend for m in self.modules() if isinstance(m, PixelConv)}
        return backends.pop() if len(backends) == 1 else sorted(backends)

    @backend.setter
    def backend(self, value):
        check_options(type(self).__name__, value)
        for m in self.modules():
            if isinstance(m, PixelConv):
                m.backend = value


class UpDynamicConv(_BackendMixin, _ref.UpDynamicConv):
    """The seed's x2 UpDynamicConv with a fused ``pixel_conv``: ``UpDynamicConv(backend="auto")``."""

    pixel_conv_class = PixelConv

    def __init__(self, backend="auto"):
        super().__init__()
        self.backend = backend


class CommonDynamicConv(_BackendMixin, _ref.CommonDynamicConv):
    """The seed's non-upsampling CommonDynamicConv with a fused ``pixel_conv``."""

    pixel_conv_class = PixelConv

    def __init__(self, backend="auto"):
        super().__init__()
        self.backend = backend


@register("udvd")
class UDVD(_BackendMixin, _ref.UDVD):
    """``UDVD(backend="auto")``: the seed's UDVD whose three dynamic convolutions are fused.

    Same parameters, state_dict keys and random initialisation (for a given seed) as
    ``fastliif.reference.UDVD``; ``forward(image, kernel, noise) -> (output1, output2, output3)``.
    Setting ``model.backend`` later applies to every stage.
    """

    up_class = UpDynamicConv
    common_class = CommonDynamicConv

    def __init__(self, backend="auto"):
        super().__init__()
        self.backend = backend


__all__ = ["PixelConv", "UpDynamicConv", "CommonDynamicConv", "UDVD", "fused_pixel_conv", "pixel_conv_geometry"]
