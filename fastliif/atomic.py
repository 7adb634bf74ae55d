"""The one way fastliif writes a file: nothing is ever left half-written.

Every file the package writes (images, checkpoints, JSON, plots, patches, benchmark results)
goes through :func:`atomic_write` (a file object) or :func:`atomic_path` (a temporary path, for
libraries that insist on a file name: h5py, NumPy memory maps): the bytes go to a temporary file
in the destination's own folder (so the final rename never crosses a filesystem), are flushed and
fsynced, and only then does ``os.replace`` put the file in place. A kill, a full disk or an
exception at any point leaves the old file untouched and removes the temporary (a SIGKILL cannot
run cleanup: it leaves a hidden ``.NAME.*.tmp`` beside the intact old file); two concurrent
writers each rename a complete file, so the path always holds one of them whole.

The result looks like what a plain ``open(path, 'w')`` gives: a new file gets ``0o666 & ~umask``,
an existing file keeps its permission bits, and a symlink is written through (its target is
replaced, the link stays).
"""
import contextlib
import errno
import json
import os
import stat
import tempfile

__all__ = ["atomic_write", "atomic_path", "save_torch", "write_text", "write_json", "save_figure", "save_image",
           "DiskFullError"]

_FULL = (errno.ENOSPC, errno.EDQUOT)
_MAX_PREFIX = 200  # keeps ".NAME.XXXXXXXX.tmp" under the usual 255-byte file-name limit


class DiskFullError(OSError):
    """The filesystem ran out of space (or quota) while writing; the old file is intact."""


def _full_errno(exc):
    """ENOSPC/EDQUOT if ``exc`` or an exception it wraps is one: libraries re-raise write errors as
    their own (``torch.save`` turns ENOSPC into a ``RuntimeError`` whose context is the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def _umask():
    # Read without changing it where the OS allows: the os.umask(0)/os.umask(old) dance would
    # briefly give files created by other threads mode 0o666.
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target):
    """Permission bits a plain open(target, 'w') would leave: the existing file's, or 0o666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(folder):
    # Make the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _cannot_create(exc, path, folder):
    """The temporary could not be made: an error about ``path`` (not about a random temp name)."""
    if exc.errno in _FULL:
        return DiskFullError(exc.errno, f"disk full: cannot write {path}")
    if exc.errno == errno.ENOENT:
        reason = f"folder {folder} does not exist"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"folder {folder} is not writable ({exc.strerror})"
    else:
        reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"cannot write {path}: {reason}")


@contextlib.contextmanager
def _staged(path):
    """Yield ``(fd, tmp)`` for a new temporary beside ``path``; on success it replaces ``path``.
    The caller makes the content durable (fsync) before leaving the block."""
    path = os.fspath(path)
    # Write through a symlink as open() would, instead of replacing the link by a file.
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    prefix = "." + os.path.basename(target)[:_MAX_PREFIX] + "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _cannot_create(exc, path, folder) from None
    try:
        yield fd, tmp
        # mkstemp makes 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, _mode_for(target))
        try:
            os.replace(tmp, target)
        except OSError as exc:  # e.g. the target is a folder: say so about the path, not the temp name
            raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        code = _full_errno(exc)
        if code is not None and not isinstance(exc, DiskFullError):
            raise DiskFullError(code, f"disk full while writing {path} (the previous file, if any, "
                                      f"is unchanged)") from exc
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Context manager yielding a file object; on success its content replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. Out-of-space errors (also when a library wraps them, as
    ``torch.save`` does) are re-raised as :class:`DiskFullError` with a message naming the path.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    with _staged(path) as (fd, _):
        # On failure (an unknown encoding, say) fdopen has already closed fd itself.
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path):
    """Context manager yielding the name of an empty temporary file beside ``path``, for writers
    that need a file name (``h5py.File(tmp, 'w')``, ``numpy.lib.format.open_memmap(tmp, 'w+')``).
    When the block ends without an exception the temporary (closed by then) is fsynced and
    replaces ``path``; otherwise it is removed and ``path`` is untouched."""
    with _staged(path) as (fd, tmp):
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_torch(obj, path):
    """``torch.save`` through :func:`atomic_write`."""
    import torch
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def write_text(path, text):
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path, obj, indent=1, **kwargs):
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, **kwargs)
        f.write("\n")


def save_figure(fig, path, **kwargs):
    """``fig.savefig`` through :func:`atomic_write`; the format comes from ``path``'s suffix."""
    fmt = kwargs.pop("format", None) or os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


def save_image(img, path, format=None, **params):
    """``PIL.Image.save`` through :func:`atomic_write`; the format comes from ``path``'s suffix."""
    from PIL import Image
    if format is None:
        ext = os.path.splitext(path)[1].lower()
        format = Image.registered_extensions().get(ext)
        if format is None:
            raise ValueError(f"cannot tell the image format of {path!r} from its extension")
    with atomic_write(path, "wb") as f:
        img.save(f, format=format, **params)
