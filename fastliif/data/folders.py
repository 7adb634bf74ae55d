"""Image datasets yielding float32 CxHxW tensors in [0, 1]: a folder of images (``image-folder``,
as the official LIIF one) and the sample photographs bundled with scikit-image / matplotlib
(``sample-images``; no download: used to train and check the bundled model)."""
import importlib
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import is_image_file, load_image
from .registry import register

CACHE_MODES = ("none", "in_memory")

# Natural colour photographs shipped inside scikit-image (no network needed).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field",
                  "retina", "immunohistochemistry", "colorwheel", "camera", "moon")


class _Repeated(Dataset):
    """Index over ``repeat`` passes of ``self.n_items()`` items, with optional in-memory cache."""

    def __init__(self, repeat, cache):
        if int(repeat) < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        self.repeat, self.cache = int(repeat), cache
        self._cached = {}

    def __len__(self):
        return self.n_items() * self.repeat

    def __getitem__(self, idx):
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} items")
        i = idx % self.n_items()
        if self.cache == "in_memory":
            if i not in self._cached:
                self._cached[i] = self.load(i)
            return self._cached[i]
        return self.load(i)


@register("image-folder")
class ImageFolder(_Repeated):
    """Images of a folder (sorted by name; PNG/JPEG/BMP/TIFF/WebP), read as RGB via Pillow.

    ``first_k`` keeps the first k files, ``repeat`` lengthens an epoch, ``cache='in_memory'``
    decodes each file once.
    """

    def __init__(self, root_path, first_k=None, repeat=1, cache="none"):
        super().__init__(repeat, cache)
        if not os.path.isdir(root_path):
            raise FileNotFoundError(f"image folder not found: {root_path}")
        files = sorted(f for f in os.listdir(root_path) if is_image_file(f))
        if first_k is not None:
            files = files[:int(first_k)]
        if not files:
            raise ValueError(f"no images in {root_path} (png, jpg, bmp, tif, webp)")
        self.root_path = root_path
        self.files = [os.path.join(root_path, f) for f in files]

    def n_items(self):
        return len(self.files)

    def load(self, i):
        return load_image(self.files[i])


def _sample_photo(name):
    if name == "grace_hopper":
        import matplotlib
        return np.asarray(load_image(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")))
    try:
        import skimage.data
    except ImportError:
        raise ImportError("sample-images needs scikit-image (pip install scikit-image)") from None
    if name not in SKIMAGE_PHOTOS:
        raise ValueError(f"unknown sample image {name!r}; choose from {SKIMAGE_PHOTOS + ('grace_hopper',)}")
    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity): use the left view
        img = img[0]
    img = np.asarray(img, dtype=np.float32) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3].transpose(2, 0, 1)


@register("sample-images")
class SampleImages(_Repeated):
    """Photographs bundled with scikit-image (and matplotlib's ``grace_hopper``), by name, as RGB."""

    def __init__(self, names, repeat=1, cache="in_memory"):
        super().__init__(repeat, cache)
        if isinstance(names, str):
            names = [names]
        if not names:
            raise ValueError("sample-images needs at least one name")
        self.names = list(names)
        for n in self.names:
            if n != "grace_hopper" and n not in SKIMAGE_PHOTOS:
                raise ValueError(f"unknown sample image {n!r}; choose from {SKIMAGE_PHOTOS + ('grace_hopper',)}")
        # the packages holding the photographs, checked now rather than at the first image
        needs = {"matplotlib" if n == "grace_hopper" else "skimage.data" for n in self.names}
        for module in sorted(needs):
            try:
                importlib.import_module(module)
            except ImportError:
                package = {"skimage.data": "scikit-image"}.get(module, module)
                raise ImportError(f"sample-images {', '.join(self.names)} needs {package} "
                                  f"(pip install {package})") from None

    def n_items(self):
        return len(self.names)

    def load(self, i):
        return torch.from_numpy(np.ascontiguousarray(_sample_photo(self.names[i]), dtype=np.float32))
