"""What the C++ extension is compiled from and with, in one place for both builds: ahead of
time (setup.py) and on first use (fastliif._ext). Imports nothing but the standard library, so
setup.py can load it by path before it knows whether torch is importable.

Flags deliberately absent: ``-std=...`` (torch's build helpers pass the standard its headers are
written for: C++20 for torch 2.13, whose headers warn under C++17) and ``-DPy_LIMITED_API``
(torch's BuildExtension defines it for ``py_limited_api=True`` extensions; passing it too
redefines it with another value).
"""
import glob
import os

CXX_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off"]
NVCC_FLAGS = ["-O3"]
LINK_FLAGS = ["-fopenmp"]
# Every file a build may read; the first-use build keys its cache on their content.
SOURCE_SUFFIXES = (".cpp", ".h", ".hpp", ".cu", ".cuh")


def _glob(csrc, pattern):
    return sorted(glob.glob(os.path.join(csrc, pattern)))


def cpu_sources(csrc):
    """The sources compiled always: csrc/*.cpp (schemas, glue) and csrc/cpu/*.cpp (CPU kernels)."""
    return _glob(csrc, "*.cpp") + _glob(csrc, os.path.join("cpu", "*.cpp"))


def cuda_sources(csrc):
    """The sources compiled when CUDA is wanted: the kernels (csrc/cuda/*.cu, torch-free) and
    their torch glue (csrc/cuda/*.cpp, which registers them for the CUDA dispatch key)."""
    return _glob(csrc, os.path.join("cuda", "*.cu")) + _glob(csrc, os.path.join("cuda", "*.cpp"))


def _flag(environ, name):
    return environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def want_cuda(torch, cuda_home, environ=os.environ):
    """Compile the .cu files? FASTLIIF_SKIP_CUDA=1 never, FASTLIIF_FORCE_CUDA=1 always (a machine
    with nvcc but no GPU), otherwise when nvcc, a CUDA build of torch and a GPU are all present."""
    if _flag(environ, "FASTLIIF_SKIP_CUDA"):
        return False
    if _flag(environ, "FASTLIIF_FORCE_CUDA"):
        return True
    return cuda_home is not None and torch.version.cuda is not None and torch.cuda.is_available()
