"""Builds fastliif._C: CPU kernels always, CUDA kernels when nvcc and a CUDA torch exist.

Switches (environment):
  FASTLIIF_FORCE_CUDA=1   compile the .cu files even when no GPU is visible
  FASTLIIF_SKIP_CUDA=1    never compile them
  MAX_JOBS=N              parallel compile jobs (ninja)
  TORCH_CUDA_ARCH_LIST    GPU archs; defaults to Ampere+Hopper when no GPU is visible
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _want_cuda():
    if _flag("FASTLIIF_SKIP_CUDA"):
        return False
    if _flag("FASTLIIF_FORCE_CUDA"):
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None and torch.cuda.is_available()


def extensions():
    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    cxx = ["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-DPy_LIMITED_API=0x03090000"]
    define = []
    cuda_sources = rel("csrc/cuda/*.cu")
    if _want_cuda() and cuda_sources:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;8.6;9.0"
        define.append(("WITH_CUDA", None))
        return [CUDAExtension(
            "fastliif._C", sources + rel("csrc/cuda/*.cpp") + cuda_sources, define_macros=define,
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
            extra_link_args=["-fopenmp"], py_limited_api=True)]
    return [CppExtension(
        "fastliif._C", sources, define_macros=define,
        extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"], py_limited_api=True)]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
