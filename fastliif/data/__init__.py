"""Data for super-resolution: image folders, LIIF / fixed-scale training wrappers, resizing,
patch preparation and SRMD/UDVD degradations. Datasets are built by name: ``make(spec)``."""
from .io import load_image, save_image
from .registry import make, names, register

__all__ = ["make", "names", "register", "load_image", "save_image"]
