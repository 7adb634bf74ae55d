"""Drop-in modules backed by the fused ops."""
from .liif import LIIF, fused_query_rgb, mlp_linears

__all__ = ["LIIF", "fused_query_rgb", "mlp_linears"]
