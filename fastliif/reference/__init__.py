"""Pure-PyTorch oracle with the official LIIF semantics (no fused code anywhere below)."""
from .coord import make_cell, make_coord, to_pixel_samples
from .dynamic_conv import PixelConv, dynamic_conv_reference, pixel_conv_reference
from .edsr import EDSR, make_edsr, make_edsr_baseline
from .liif import LIIF, batched_predict, imnet_in_dim, query_rgb_reference, sample_nearest
from .mlp import MLP
from .rdn import RDN, make_rdn
from .udvd import UDVD, CommonDynamicConv, ResBlock, UpDynamicConv

__all__ = [
    "make_coord", "to_pixel_samples", "make_cell", "MLP", "EDSR", "make_edsr", "make_edsr_baseline",
    "RDN", "make_rdn", "LIIF", "batched_predict", "imnet_in_dim", "query_rgb_reference", "sample_nearest",
    "PixelConv", "pixel_conv_reference", "dynamic_conv_reference", "ResBlock", "UpDynamicConv", "CommonDynamicConv",
    "UDVD",
]
