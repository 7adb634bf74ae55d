"""The compiled kernels (torch.ops.fastliif.*): where they come from. Importing this never fails
and never compiles.

In order:
1. ``fastliif._C``, built ahead of time (``pip install --no-build-isolation .``, scripts/setup.sh,
   ``python setup.py build_ext --inplace``).
2. A first-use build of the shipped C++ sources (``fastliif/csrc`` in a wheel, ``csrc/`` in a
   checkout) against the installed torch, cached in ``$FASTLIIF_CACHE`` (default
   ``~/.cache/fastliif``) under ``torch-<version>-py<XY>-<arch>/<hash of sources and flags>/``.
   A wheel built without torch (``pip install .`` with build isolation) relies on it, and so does
   an ahead-of-time ``_C`` that fails to load (built against another torch).
3. None: every op runs on the torch backend.

The rule: import only *loads* (1, else an existing 2). Compiling (about a minute) happens the first
time an op resolves a backend for CPU float tensors with ``backend`` "auto" or "cpu" (``ensure()``),
or explicitly with ``fastliif build-ext``; one line on stderr says so while it runs. Import stays
fast, an install that never uses the cpu backend (GPU only) never compiles, and where 1 exists
(CI, setup.sh) nothing is ever compiled on the fly. When no kernels can be had (no compiler, no
ninja, read-only cache), the op runs on the torch backend after one line on stderr, once per
process; a failed compile is remembered next to its log so later processes do not retry it
(``fastliif build-ext`` does).

Environment:
  FASTLIIF_EXT=off   no compiled kernels at all (torch backend everywhere)
  FASTLIIF_EXT=jit   ignore fastliif._C: use, or compile, the first-use build (tests that path)
  FASTLIIF_JIT=0     never compile implicitly (an existing first-use build still loads)
  FASTLIIF_CACHE=DIR where first-use builds live
"""
import hashlib
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import torch  # loads libtorch before any extension

from . import _build

LIB_NAME = "fastliif_C"
LIB_FILE = LIB_NAME + (".pyd" if os.name == "nt" else ".so")  # what torch.utils.cpp_extension.load writes

STALE_LOCK_S = 600  # a compile takes ~1 min (several on a busy machine); a lock this old is orphaned

HAS_EXT = False
EXT_ERROR = None  # why there are no kernels (None when HAS_EXT)
LOADED_FROM = None  # "fastliif._C" or the first-use library's path
_compile_tried = False
_notice_shown = False


def _mode():
    # An import blocked on purpose (sys.modules entry None: how tests simulate an install without
    # the extension) means no compiled kernels at all, not "go and compile them".
    if sys.modules.get(f"{__package__}._C", False) is None:
        return "off", "fastliif._C: import blocked (sys.modules entry is None)"
    mode = os.environ.get("FASTLIIF_EXT", "auto").strip().lower() or "auto"
    if mode not in ("auto", "off", "jit"):
        return "auto", None  # an unknown value must not disable the kernels silently; env shows it
    return mode, "compiled kernels disabled (FASTLIIF_EXT=off)" if mode == "off" else None


def csrc_dir():
    """The C++ sources: inside the installed package, else the checkout's csrc/ (None if neither)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "csrc", here.parent / "csrc"):
        if (cand / "module.cpp").is_file():
            return cand
    return None


def cache_root():
    if os.environ.get("FASTLIIF_CACHE"):
        return Path(os.environ["FASTLIIF_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastliif"


def _with_cuda(csrc):
    if not _build.cuda_sources(str(csrc)) or torch.version.cuda is None:
        return False
    from torch.utils.cpp_extension import CUDA_HOME
    return _build.want_cuda(torch, CUDA_HOME)


def build_dir(csrc=None):
    """Folder of the first-use build for this torch, Python, machine and these exact sources."""
    csrc = csrc or csrc_dir()
    digest = hashlib.sha256()
    for path in sorted(p for p in csrc.rglob("*") if p.suffix in _build.SOURCE_SUFFIXES and p.is_file()):
        digest.update(path.relative_to(csrc).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    # CUDA kernels are part of the key only where they could be built (probing CUDA_HOME needs
    # torch.utils.cpp_extension, which is slow to import: skip it on CPU-only torch builds).
    cuda = torch.version.cuda is not None and _with_cuda(csrc)
    digest.update(repr((_build.CXX_FLAGS, _build.NVCC_FLAGS, _build.LINK_FLAGS, cuda, torch.version.cuda,
                        torch.compiled_with_cxx11_abi())).encode())
    tag = f"torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    return cache_root() / tag / digest.hexdigest()[:16]


def _set(ok, error=None, source=None):
    global HAS_EXT, EXT_ERROR, LOADED_FROM
    HAS_EXT, EXT_ERROR, LOADED_FROM = ok, (None if ok else error), (source if ok else None)


def _load_cached(folder):
    """Load an existing first-use build; returns an error string or None."""
    lib = folder / LIB_FILE
    if not lib.is_file():
        return None
    try:
        torch.ops.load_library(str(lib))
    except (OSError, RuntimeError) as exc:  # unloadable, or its ops already registered
        return f"cannot load {lib}: {exc}"
    _set(True, source=str(lib))
    return None


def _load_aot():
    """Import fastliif._C; returns an error string or None."""
    here = Path(__file__).resolve().parent
    try:
        spec = importlib.util.find_spec(f"{__package__}._C")
        # Only this package's own _C: another checkout's editable-install finder can also answer
        # for the name, with a library built from other sources.
        if spec is not None and spec.origin and Path(spec.origin).resolve().parent != here:
            return f"fastliif._C: {spec.origin} is not in this package ({here}): ignored"
        from . import _C  # noqa: F401  (its static registrations define torch.ops.fastliif.*)
    except ImportError as exc:  # not built (a wheel made without torch), or built for another torch
        return f"fastliif._C: {type(exc).__name__}: {exc}"
    _set(True, source="fastliif._C")
    return None


def _probe():
    mode, why = _mode()
    if mode == "off":
        _set(False, why)
        return
    aot_error = "fastliif._C ignored (FASTLIIF_EXT=jit)"
    if mode == "auto":
        aot_error = _load_aot()
        if aot_error is None:
            return
    csrc = csrc_dir()
    if csrc is None:
        _set(False, f"{aot_error}; the C++ sources are not installed either")
        return
    try:
        error = _load_cached(build_dir(csrc))
    except OSError as exc:
        error = f"cannot read the C++ sources: {exc}"
    if not HAS_EXT:
        _set(False, f"{aot_error}; {error or 'not compiled yet: compiled on first use of the cpu backend, or run `fastliif build-ext`'}")


def _short(exc):
    """One line out of a compiler failure: the headline plus the first line naming an error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = lines[0] if lines else type(exc).__name__
    detail = next((line for line in lines[1:] if "error" in line.lower() or "FAILED" in line), "")
    return (head + (f" ({detail})" if detail and detail != head else ""))[:300]


def build(force=False, verbose=False):
    """Compile (or reuse) the first-use build and load it. True when the kernels are loaded.

    ``force`` recompiles even over a cached build or a remembered failure. Does nothing when
    kernels are already loaded (a second copy of the same torch library cannot be registered)."""
    from . import atomic

    if HAS_EXT:
        return True
    mode, why = _mode()
    if mode == "off":
        _set(False, why)
        return False
    csrc = csrc_dir()
    if csrc is None:
        _set(False, "the C++ sources (fastliif/csrc) are not installed: nothing to compile")
        return False
    try:
        folder = build_dir(csrc)
        failed, log = folder / "FAILED", folder / "build.log"
        if failed.is_file() and not force:
            _set(False, f"an earlier compile failed ({failed.read_text().strip()}; log {log}); "
                        "`fastliif build-ext` retries")
            return False
        if not force and _load_cached(folder) is None and HAS_EXT:
            _register()
            return True
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / "lock"  # torch's build lock: one left by a killed compile makes load() wait forever
        if lock.is_file() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink()
    except OSError as exc:
        _set(False, f"cannot use the build cache {cache_root()}: {exc}")
        return False
    print(f"fastliif: compiling the C++ kernels for torch {torch.__version__} into {folder} "
          "(once; about a minute) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        from torch.utils.cpp_extension import load

        with_cuda = _with_cuda(csrc)
        sources = _build.cpu_sources(str(csrc)) + (_build.cuda_sources(str(csrc)) if with_cuda else [])
        # is_python_module=False: torch.ops.load_library dlopens the result; its static
        # TORCH_LIBRARY registrations define the ops exactly as fastliif._C's do.
        load(name=LIB_NAME, sources=sources, build_directory=str(folder), is_python_module=False,
             extra_cflags=_build.CXX_FLAGS + (["-DWITH_CUDA"] if with_cuda else []),
             extra_cuda_cflags=_build.NVCC_FLAGS + (["-DWITH_CUDA"] if with_cuda else []), extra_ldflags=_build.LINK_FLAGS,
             with_cuda=with_cuda, verbose=verbose)
    except Exception as exc:  # any failure (no compiler, no ninja, compile error) means: torch backend
        message = _short(exc)
        try:
            atomic.write_text(log, f"{type(exc).__name__}: {exc}\n")
            atomic.write_text(failed, message + "\n")
        except OSError:
            pass
        _set(False, f"compiling the C++ kernels failed: {message} (log {log})")
        return False
    try:
        failed.unlink()
    except OSError:
        pass
    _set(True, source=str(folder / LIB_FILE))
    _register()
    print(f"fastliif: compiled in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return True


def _register():
    from .ops import _library
    _library.register()  # fake kernels and autograd for the ops just loaded


def ensure():
    """True when compiled kernels are loaded; on the first call without them, compiles them
    (unless FASTLIIF_JIT=0 or FASTLIIF_EXT=off) and otherwise prints, once, why the torch
    backend runs instead. Called when an op is about to choose the cpu backend."""
    global _compile_tried, _notice_shown
    if HAS_EXT:
        return True
    if not _compile_tried and _mode()[0] != "off" and os.environ.get("FASTLIIF_JIT", "1") != "0":
        _compile_tried = True
        if build():
            return True
    if not _notice_shown and _mode()[0] != "off":
        _notice_shown = True
        print(f"fastliif: no compiled kernels ({EXT_ERROR}); running on the torch backend (slower)",
              file=sys.stderr, flush=True)
    return False


def describe():
    """One line for `fastliif env`."""
    if HAS_EXT:
        return "fastliif._C loaded (built at install)" if LOADED_FROM == "fastliif._C" else \
            f"first-use build loaded from {LOADED_FROM}"
    return EXT_ERROR


def has_triton():
    """True when the triton package can be imported (without importing it here)."""
    return importlib.util.find_spec("triton") is not None


_probe()
