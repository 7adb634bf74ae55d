"""`fastliif build-ext`: compile the C++ kernels now, against the installed torch.

A wheel built without torch (``pip install .``) compiles them on the first use of the cpu
backend anyway; this does it up front, shows the compiler's output with ``--verbose``, and
retries after a failure (which is otherwise remembered, so later runs do not stall on it).
"""
import shutil
import subprocess
import sys


def register(sub):
    p = sub.add_parser("build-ext", help="compile the C++ kernels against the installed torch (cached)",
                       description="Compiles fastliif's C++ sources against the installed torch into "
                                   "$FASTLIIF_CACHE (default ~/.cache/fastliif), unless the extension "
                                   "built at install time is loaded. Nothing to do when the build is cached.")
    p.add_argument("--force", action="store_true", help="recompile even over a cached build or failure")
    p.add_argument("--verbose", action="store_true", help="show the compiler's commands and output")
    p.set_defaults(func=run)


def run(args):
    from .. import _ext

    if _ext.HAS_EXT and _ext.LOADED_FROM == "fastliif._C":
        print("fastliif._C (built at install) is loaded: nothing to compile")
        return 0
    if _ext.HAS_EXT and not args.force:
        print(f"already compiled: {_ext.LOADED_FROM}")
        return 0
    if _ext.HAS_EXT:  # loaded in this process, which cannot load a second copy: rebuild in a fresh one
        shutil.rmtree(_ext.build_dir(), ignore_errors=True)
        return subprocess.call([sys.executable, "-m", "fastliif", "build-ext"] + ["--verbose"] * args.verbose)
    if not _ext.build(force=args.force, verbose=args.verbose):
        print(f"fastliif build-ext: error: {_ext.EXT_ERROR}", file=sys.stderr)
        return 2
    print(f"compiled: {_ext.LOADED_FROM}")
    return 0
