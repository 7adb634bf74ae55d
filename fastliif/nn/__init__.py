"""Drop-in modules backed by the fused ops."""
from .liif import LIIF, fused_query_rgb, mlp_linears
from .udvd import UDVD, CommonDynamicConv, PixelConv, UpDynamicConv, fused_pixel_conv

__all__ = ["LIIF", "fused_query_rgb", "mlp_linears", "UDVD", "UpDynamicConv", "CommonDynamicConv", "PixelConv",
           "fused_pixel_conv"]
