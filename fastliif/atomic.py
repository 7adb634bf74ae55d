"""The one way fastliif writes a file: nothing is ever left half-written.

Every file the package writes (images, checkpoints, JSON, plots, patches, benchmark results)
goes through :func:`atomic_write`: the bytes go to a temporary file in the destination's own
folder (so the final rename never crosses a filesystem), are flushed and fsynced, and only
then does ``os.replace`` put the file in place. A kill, a full disk or an exception at any
point leaves the old file untouched and removes the temporary; two concurrent writers each
rename a complete file, so the path always holds one of them whole.
"""
import contextlib
import errno
import json
import os
import tempfile

__all__ = ["atomic_write", "save_torch", "write_text", "write_json", "save_figure", "save_image",
           "DiskFullError"]


class DiskFullError(OSError):
    """The filesystem ran out of space (or quota) while writing; the old file is intact."""


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


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Context manager yielding a file object; on success its content replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"``. Out-of-space errors are re-raised as
    :class:`DiskFullError` with a message naming the path.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) \
                and not isinstance(exc, DiskFullError):
            raise DiskFullError(exc.errno, f"disk full while writing {path} (the previous file, if any, "
                                           f"is unchanged)") from exc
        raise
    _fsync_dir(folder)


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
