"""Encode an image tile by tile, so that the encoder's memory does not grow with the image.

The encoders LIIF uses (EDSR, RDN without upsampling) are stacks of stride-1 "same" convolutions,
skip connections and pointwise activations: one feature depends only on the input pixels within
``receptive_radius(encoder)`` of it (the sum of the convolutions' radii, an upper bound on every
path through the network). So a crop of the input extended by that halo, encoded alone, gives
the crop's features as the whole image would (to fp32 rounding: convolutions of other sizes may
sum in another order); at the image's own borders the crop's zero padding is the image's.

The result is still a whole-image map (the features, or what a ``head`` such as LIIF's
first-layer projection makes of them), so that the queries run on it in the image's own
coordinates: LIIF's weights at the borders hang on rounding-level differences of its relative
coordinates, which re-expressing the queries in a crop's frame would change.
"""
import torch
import torch.nn as nn

POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Identity)
MIN_CORE = 256  # LR cells per tile side at least; more for deep encoders, so the halo stays <= 1/2


def receptive_radius(encoder):
    """Input pixels on each side that can reach one feature of ``encoder``, or None when that
    cannot be bounded (an encoder other than fastliif's EDSR / RDN, one that upsamples, or
    one with layers other than stride-1 zero-padded "same" convolutions and pointwise ones)."""
    from .reference.edsr import EDSR
    from .reference.rdn import RDN

    # exact classes: a subclass may override forward with non-local operations
    if type(encoder) not in (EDSR, RDN) or not getattr(encoder.args, "no_upsampling", False):
        return None
    radius = 0
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            k, d, p = module.kernel_size, module.dilation, module.padding
            same = not isinstance(p, str) and all(ki % 2 == 1 and pi == di * (ki - 1) // 2
                                                  for ki, di, pi in zip(k, d, p))
            if module.stride != (1, 1) or module.padding_mode != "zeros" or not same:
                return None
            radius += max(di * (ki - 1) // 2 for ki, di in zip(k, d))
        elif not list(module.children()) and not isinstance(module, POINTWISE):
            return None
    return radius


def core_size(radius):
    """LR cells per tile side: at least MIN_CORE, and 4 halos so recomputation stays moderate."""
    return max(MIN_CORE, 4 * radius)


def encode_region(encoder, inp, rows, cols, radius):
    """Features of ``inp`` (1, C, h, w) over LR ``rows`` = [r0, r1) x ``cols`` = [c0, c1), computed
    from the crop extended by ``radius`` (see receptive_radius)."""
    h, w = inp.shape[-2:]
    (r0, r1), (c0, c1) = rows, cols
    i0, i1 = max(0, r0 - radius), min(h, r1 + radius)
    j0, j1 = max(0, c0 - radius), min(w, c1 + radius)
    feat = encoder(inp[..., i0:i1, j0:j1])
    return feat[..., r0 - i0:r1 - i0, c0 - j0:c1 - j0]


def encode_tiled(encoder, inp, tile=None, radius=None, head=None, margin=0):
    """``head(encoder(inp))`` for the whole of ``inp`` (1, C, h, w), computed ``tile`` x ``tile`` LR
    cells at a time (peak memory: one tile's activations plus the result, stored channels-last).
    ``head`` (default: none) maps features (1, C, th, tw) to (1, C', th, tw) reading ``margin``
    cells around each one (e.g. 1 for a 3x3 convolution). ValueError when the encoder's
    receptive field cannot be bounded (receptive_radius is None)."""
    radius = receptive_radius(encoder) if radius is None else radius
    if radius is None:
        raise ValueError(f"cannot bound the receptive field of {type(encoder).__name__}: encode it whole")
    tile = core_size(radius) if tile is None else int(tile)
    h, w = inp.shape[-2:]
    out = None
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            r1, c1 = min(h, r0 + tile), min(w, c0 + tile)
            f0, f1, g0, g1 = max(0, r0 - margin), min(h, r1 + margin), max(0, c0 - margin), min(w, c1 + margin)
            feat = encode_region(encoder, inp, (f0, f1), (g0, g1), radius)
            if head is not None:
                feat = head(feat)
            if out is None:
                out = feat.new_empty(feat.shape[0], h, w, feat.shape[1]).permute(0, 3, 1, 2)
            out[..., r0:r1, c0:c1] = feat[..., r0 - f0:r1 - f0, c0 - g0:c1 - g0]
    return out


__all__ = ["receptive_radius", "core_size", "encode_region", "encode_tiled"]
