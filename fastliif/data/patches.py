"""Cut large training images (DIV2K 2K) into overlapping square patches, stored as PNG files or as
one HDF5 file, and read the HDF5 file back as a dataset (``hdf5-patches``).

Seed 003's recipe (A2N on DIV2K): 480x480 tiles every 200 pixels, tiles running past the border
dropped (800 DIV2K train images -> about 32k tiles); training then takes random 128/192 crops of
the tiles and downsamples them. ``thresh_size`` adds BasicSR's border rule instead: when more than
``thresh_size`` pixels remain after the last regular tile, one more tile flush with the border is
taken (BasicSR prepares DIV2K with crop 480, step 240, thresh_size 0).

HDF5 layout: dataset ``patches``, uint8, shape (N, 3, crop, crop) (CHW, RGB), chunked one patch per
chunk so a patch is read without touching the others; dataset ``names`` (N UTF-8 strings, the
PNG route's file stems, e.g. ``0001_s001``); attributes ``crop_size``, ``step``, ``thresh_size``
(-1 for none). Patches are numbered per source image in row-major order from 1.
"""
import os
import warnings

import numpy as np
import torch

from .folders import _Repeated
from .io import is_image_file, open_image
from .registry import register

FORMATS = ("png", "hdf5")


def tile_starts(length, crop_size, step, thresh_size=None):
    """Start offsets of the tiles along one axis of ``length`` pixels (empty if too short)."""
    if length < crop_size:
        return []
    starts = list(range(0, length - crop_size + 1, step))
    if thresh_size is not None and length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def _check_int(v, name, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _iter_patches(path, crop_size, step, thresh_size):
    img = open_image(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)                                      # H, W, 3 uint8
    ys = tile_starts(arr.shape[0], crop_size, step, thresh_size)
    xs = tile_starts(arr.shape[1], crop_size, step, thresh_size)
    if not ys or not xs:
        warnings.warn(f"{path}: {arr.shape[1]}x{arr.shape[0]} is smaller than crop_size {crop_size}; skipped")
    for y in ys:
        for x in xs:
            yield arr[y:y + crop_size, x:x + crop_size]


def _prepare_out(out, fmt, overwrite):
    if fmt == "png":
        if os.path.isfile(out):
            raise FileExistsError(f"{out} is a file; the PNG route writes a folder")
        if os.path.isdir(out) and os.listdir(out) and not overwrite:
            raise FileExistsError(f"output folder {out} is not empty (pass overwrite=True / --overwrite)")
        os.makedirs(out, exist_ok=True)
    else:
        if os.path.isdir(out):
            raise FileExistsError(f"{out} is a folder; the HDF5 route writes one file")
        if os.path.exists(out) and not overwrite:
            raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite)")
        parent = os.path.dirname(os.path.abspath(out))
        os.makedirs(parent, exist_ok=True)


def crop_to_patches(src_dir, out, crop_size=480, step=200, thresh_size=None, fmt="png", progress=True,
                    overwrite=False, compression=None):
    """Cut every image of ``src_dir`` (sorted by name, read as RGB) into ``crop_size`` squares every
    ``step`` pixels; write them as ``out/<stem>_s001.png ...`` (``fmt='png'``) or into the HDF5 file
    ``out`` (``fmt='hdf5'``, layout in the module docstring; ``compression`` e.g. 'lzf' or 'gzip').
    Returns the number of patches written."""
    crop_size = _check_int(crop_size, "crop_size", 1)
    step = _check_int(step, "step", 1)
    if thresh_size is not None:
        thresh_size = _check_int(thresh_size, "thresh_size", 0)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"source folder not found: {src_dir}")
    files = sorted(f for f in os.listdir(src_dir) if is_image_file(f))
    if not files:
        raise ValueError(f"no images (png/jpg/bmp/tif/webp) in {src_dir}")
    _prepare_out(out, fmt, overwrite)

    from tqdm import tqdm
    bar = tqdm(files, desc="prepare-patches", unit="img", disable=not progress)
    count = 0
    if fmt == "png":
        from PIL import Image
        for name in bar:
            stem = os.path.splitext(name)[0]
            for k, patch in enumerate(_iter_patches(os.path.join(src_dir, name), crop_size, step, thresh_size), 1):
                # compress_level 3: lossless like any level, much faster to write than the default 6
                Image.fromarray(patch).save(os.path.join(out, f"{stem}_s{k:03d}.png"), compress_level=3)
                count += 1
            bar.set_postfix(patches=count)
        return count

    import h5py
    with h5py.File(out, "w") as f:
        data = f.create_dataset("patches", shape=(0, 3, crop_size, crop_size), maxshape=(None, 3, crop_size, crop_size),
                                dtype=np.uint8, chunks=(1, 3, crop_size, crop_size), compression=compression)
        names = []
        for name in bar:
            stem = os.path.splitext(name)[0]
            for k, patch in enumerate(_iter_patches(os.path.join(src_dir, name), crop_size, step, thresh_size), 1):
                if count == data.shape[0]:
                    data.resize(max(64, 2 * count), axis=0)
                data[count] = patch.transpose(2, 0, 1)
                names.append(f"{stem}_s{k:03d}")
                count += 1
            bar.set_postfix(patches=count)
        data.resize(count, axis=0)
        f.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.attrs.update(crop_size=crop_size, step=step, thresh_size=-1 if thresh_size is None else thresh_size)
    return count


@register("hdf5-patches")
class HDF5Patches(_Repeated):
    """The patches of a ``crop_to_patches(..., fmt='hdf5')`` file as float32 CxHxW in [0, 1].

    The file is opened lazily, once per process, so DataLoader workers (fork or spawn) each get
    their own handle. ``first_k``, ``repeat`` and ``cache`` as ``image-folder``.
    """

    def __init__(self, path, first_k=None, repeat=1, cache="none"):
        super().__init__(repeat, cache)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"HDF5 patch file not found: {path}")
        import h5py
        try:
            with h5py.File(path, "r") as f:
                if "patches" not in f:
                    raise ValueError(f"{path}: no 'patches' dataset (write it with crop_to_patches(fmt='hdf5'))")
                n = f["patches"].shape[0]
                raw = f["names"][()] if "names" in f else None
        except OSError as exc:
            raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
        self.names = None if raw is None else [s.decode() if isinstance(s, bytes) else s for s in raw]
        if first_k is not None:
            n = min(n, _check_int(first_k, "first_k", 1))
        if n == 0:
            raise ValueError(f"{path}: holds no patches")
        if self.names is not None:
            self.names = self.names[:n]
        self.path, self._n = path, n
        self._file, self._pid = None, None

    def n_items(self):
        return self._n

    def _data(self):
        if self._file is None or self._pid != os.getpid():
            import h5py
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file["patches"]

    def load(self, i):
        return torch.from_numpy(self._data()[i]).float().div_(255.0)

    def __getstate__(self):
        # h5py handles cannot be pickled (spawned workers); each process reopens the file.
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def __del__(self):
        f = getattr(self, "_file", None)
        if f is not None and self._pid == os.getpid():
            try:
                f.close()
            except Exception:
                pass
