"""Cut large training images (DIV2K 2K) into overlapping square patches, stored as PNG files or as
one HDF5 file, and read the HDF5 file back as a dataset (``hdf5-patches``).

Seed 003's recipe (A2N on DIV2K): 480x480 tiles every 200 pixels, tiles running past the border
dropped (800 DIV2K train images -> about 32k tiles); training then takes random 128/192 crops of
the tiles and downsamples them. ``thresh_size`` adds BasicSR's border rule instead: when more than
``thresh_size`` pixels remain after the last regular tile, one more tile flush with the border is
taken (BasicSR prepares DIV2K with crop 480, step 240, thresh_size 0).

Sources: every image under the source folder, subfolders included (sorted by relative path;
symlinked folders are not followed, a folder equal to the output is skipped). A patch is named
after its source's path without the extension, folders joined by ``__`` (``a/b/0001.png`` ->
``a__b__0001_s001``); when two sources would get one name (``x.png`` and ``x.jpg``), all of them
keep their extension (``x.png_s001``, ``x.jpg_s001``), so no patch overwrites another. A file that
cannot be decoded is skipped with a warning, before any of its patches is written.

HDF5 layout: dataset ``patches``, uint8, shape (N, 3, crop, crop) (CHW, RGB), chunked one patch per
chunk so a patch is read without touching the others; dataset ``names`` (N UTF-8 strings, the
PNG route's file stems, e.g. ``0001_s001``); attributes ``crop_size``, ``step``, ``thresh_size``
(-1 for none). Patches are numbered per source image in row-major order from 1.

Every file is written through :mod:`fastliif.atomic`: a PNG patch appears whole or not at all, and
the HDF5 file is built under a temporary name and renamed when complete (an interrupted run leaves
the previous file, if any, untouched). An uncompressed HDF5 file too large for the free space is
refused before writing: h5py reports a disk that fills up mid-write, then crashes closing the file.
"""
import contextlib
import errno
import os
import warnings

import numpy as np
import torch
from PIL import Image

from ..atomic import DiskFullError, atomic_path, save_image
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


def require_h5py():
    """``import h5py``, or an ImportError saying what to install (raised before any work is done)."""
    try:
        import h5py
    except ImportError:
        raise ImportError("HDF5 patches need the h5py package (pip install h5py); "
                          "PNG patches (--format png) do not") from None
    return h5py


def list_sources(src_dir, exclude=None):
    """Image files under ``src_dir``, subfolders included, as sorted paths relative to it.
    ``exclude``: a folder not to descend into (the output, when it lies inside the source)."""
    skip = os.path.realpath(exclude) if exclude else None
    found = []
    for root, dirs, files in os.walk(src_dir):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip]
        found += [os.path.relpath(os.path.join(root, f), src_dir) for f in files if is_image_file(f)]
    return sorted(found)


def patch_stems(sources):
    """Patch name stem of each relative source path: the path without its extension, folders joined
    by ``__``; sources that would share a stem (compared case-insensitively, as some filesystems
    do) all keep their extension instead. Raises ValueError if names still collide."""
    def by_key(stems):
        groups = {}
        for src, stem in zip(sources, stems):
            groups.setdefault(stem.casefold(), []).append(src)
        return groups

    flat = [rel.replace(os.sep, "__") for rel in sources]
    stems = [os.path.splitext(f)[0] for f in flat]
    clashing = {src for group in by_key(stems).values() if len(group) > 1 for src in group}
    stems = [f if src in clashing else stem for src, f, stem in zip(sources, flat, stems)]
    still = [group for group in by_key(stems).values() if len(group) > 1]
    if still:
        raise ValueError(f"sources {', '.join(still[0])} would write patches of the same name; rename one")
    return stems


def _patches_of(path, crop_size, step, thresh_size):
    """All tiles of one source, decoded in full first (so a corrupt file yields nothing, not part of
    its patches); [] with a warning when the file cannot be decoded or is smaller than a tile."""
    try:
        img = open_image(path)
        arr = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))      # H, W, 3 uint8
    except ValueError as exc:  # open_image's "<path>: not a readable image (...)"
        warnings.warn(f"{exc}; skipped")
        return []
    ys = tile_starts(arr.shape[0], crop_size, step, thresh_size)
    xs = tile_starts(arr.shape[1], crop_size, step, thresh_size)
    if not ys or not xs:
        warnings.warn(f"{path}: {arr.shape[1]}x{arr.shape[0]} is smaller than crop_size {crop_size}; skipped")
    return [arr[y:y + crop_size, x:x + crop_size] for y in ys for x in xs]


def _check_room(out, paths, crop_size, step, thresh_size):
    """Refuse an uncompressed HDF5 file that cannot fit before writing it: when the disk fills up
    in the middle, h5py reports it and then crashes (segmentation fault) closing the file."""
    n = 0
    for path in paths:
        with contextlib.suppress(Exception):  # unreadable files are reported (and skipped) later
            with Image.open(path) as img:
                w, h = img.size
            n += len(tile_starts(h, crop_size, step, thresh_size)) * len(tile_starts(w, crop_size, step, thresh_size))
    need = n * (3 * crop_size * crop_size + 256) + (64 << 10)  # data + chunk index and names (~110-210 B each)
    st = os.statvfs(os.path.dirname(os.path.abspath(out)))
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise DiskFullError(errno.ENOSPC, f"disk full: {out} needs about {need / 2**20:.1f} MiB for {n} patches, "
                                          f"{free / 2**20:.1f} MiB free")


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
    """Cut every image under ``src_dir`` (subfolders included, sorted by path, read as RGB) into
    ``crop_size`` squares every ``step`` pixels; write them as ``out/<stem>_s001.png ...``
    (``fmt='png'``) or into the HDF5 file ``out`` (``fmt='hdf5'``, layout in the module docstring;
    ``compression`` e.g. 'lzf' or 'gzip'). Undecodable files are skipped with a warning.
    Returns the number of patches written."""
    crop_size = _check_int(crop_size, "crop_size", 1)
    step = _check_int(step, "step", 1)
    if thresh_size is not None:
        thresh_size = _check_int(thresh_size, "thresh_size", 0)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    h5py = require_h5py() if fmt == "hdf5" else None
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"source folder not found: {src_dir}")
    files = list_sources(src_dir, exclude=out)
    if not files:
        raise ValueError(f"no images (png/jpg/bmp/tif/webp) in {src_dir} or its subfolders")
    stems = patch_stems(files)
    _prepare_out(out, fmt, overwrite)
    if fmt == "hdf5" and compression is None:
        _check_room(out, [os.path.join(src_dir, f) for f in files], crop_size, step, thresh_size)

    from tqdm import tqdm
    bar = tqdm(list(zip(files, stems)), desc="prepare-patches", unit="img", disable=not progress)
    count = 0
    if fmt == "png":
        for rel, stem in bar:
            written = []
            try:
                for k, patch in enumerate(_patches_of(os.path.join(src_dir, rel), crop_size, step, thresh_size), 1):
                    path = os.path.join(out, f"{stem}_s{k:03d}.png")
                    # compress_level 3: lossless like any level, much faster to write than the default 6
                    save_image(Image.fromarray(patch), path, compress_level=3)
                    written.append(path)
            except BaseException:
                # An image's patches are all there or none: a later run (or reader) never sees half.
                for path in written:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            count += len(written)
            bar.set_postfix(patches=count)
        return count

    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_dataset("patches", shape=(0, 3, crop_size, crop_size), maxshape=(None, 3, crop_size, crop_size),
                                dtype=np.uint8, chunks=(1, 3, crop_size, crop_size), compression=compression)
        names = []
        for rel, stem in bar:
            for k, patch in enumerate(_patches_of(os.path.join(src_dir, rel), crop_size, step, thresh_size), 1):
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
        h5py = require_h5py()
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
