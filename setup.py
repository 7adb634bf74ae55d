"""Builds fastliif: with its C++ extension fastliif._C when torch is importable here, as pure
Python when it is not.

`pip install .` and `python -m build` build in an isolated environment without torch (torch is
not a build requirement: it would pull a multi-GB CUDA build, and the extension must match the
torch the user runs, not one pip picks for the build). That wheel ships the C++ sources as
package data and fastliif._ext compiles them on first use against the installed torch.
`pip install --no-build-isolation [-e] .` (scripts/setup.sh) sees the installed torch and
compiles ahead of time: CPU kernels always, CUDA kernels when nvcc and a CUDA torch exist.

Switches (environment):
  FASTLIIF_FORCE_CUDA=1   compile the .cu files even when no GPU is visible
  FASTLIIF_SKIP_CUDA=1    never compile them
  MAX_JOBS=N              parallel compile jobs (ninja)
  TORCH_CUDA_ARCH_LIST    GPU archs; defaults to Ampere+Hopper when no GPU is visible
"""
import importlib.util
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_build_config():
    # By path: importing the fastliif package would import torch.
    spec = importlib.util.spec_from_file_location("_fastliif_build", os.path.join(ROOT, "fastliif", "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def extension_setup(torch):
    """setup() keywords for the ahead-of-time extension build."""
    from torch.utils import cpp_extension
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    build = _load_build_config()
    rel = lambda paths: [os.path.relpath(p, ROOT) for p in paths]  # noqa: E731 (setuptools wants relative paths)
    csrc = os.path.join(ROOT, "csrc")
    sources, cuda_sources = rel(build.cpu_sources(csrc)), rel(build.cuda_sources(csrc))
    common = dict(extra_link_args=build.LINK_FLAGS, py_limited_api=True)
    if build.want_cuda(torch, CUDA_HOME) and cuda_sources:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;8.6;9.0"
        ext = CUDAExtension("fastliif._C", sources + cuda_sources, define_macros=[("WITH_CUDA", None)],
                            extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS}, **common)
    else:
        ext = CppExtension("fastliif._C", sources, extra_compile_args={"cxx": build.CXX_FLAGS}, **common)
    # The wheel's abi3 tag names the oldest CPython the extension is built for: the
    # Py_LIMITED_API value BuildExtension defines (0x030A0000 -> cp310 for torch 2.13).
    limited = int(getattr(cpp_extension, "min_supported_cpython", "0x030A0000"), 16)
    return dict(
        ext_modules=[ext],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
        options={"bdist_wheel": {"py_limited_api": f"cp{limited >> 24}{(limited >> 16) & 0xFF}"}},
    )


def _license():
    # setuptools >= 77 takes the SPDX expression (the license table is deprecated there);
    # older ones only the free-text field.
    import setuptools
    if int(setuptools.__version__.split(".")[0]) >= 77:
        return {"license_expression": "BSD-3-Clause"}
    return {"license": "BSD-3-Clause"}


torch = _torch()
if torch is None:
    print("fastliif setup.py: torch is not importable here (build isolation?): building pure Python; "
          "the C++ kernels compile on first use (or `fastliif build-ext`)", file=sys.stderr)
    setup(**_license())
else:
    setup(**_license(), **extension_setup(torch))
