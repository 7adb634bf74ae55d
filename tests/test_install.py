"""Installing as Python users do: the wheel a build-isolated `pip install .` / `python -m build`
makes (torch absent at build time), the first-use compile of its C++ sources, the fallback when
no compiler exists, and scripts/setup.sh on a machine that needs nothing (no network).

Costs: the wheel build ~10 s; the compile in test_build_ext_* about a minute (the one compile
in this file: the ahead-of-time build is what setup.sh and every other test use).
"""
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a source checkout holds beyond the package's inputs; the copy leaves it out.
NOT_INPUTS = shutil.ignore_patterns("*.so", "*.pyd", "*.o", "__pycache__", ".git", "build", "*.egg-info",
                                    ".pytest_cache", ".benchmarks", ".venv", "save", "tests", "benchmarks", "docs",
                                    "fastliif-demo.png")
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/nowhere", "PIP_FIND_LINKS": ""}


def run(cmd, cwd, env_extra=None, ok=True, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTLIIF_EXT", "FASTLIIF_JIT")}
    env.update(env_extra or {})
    proc = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def copy_source(dest):
    shutil.copytree(ROOT, dest, ignore=NOT_INPUTS, symlinks=True)
    return dest


# PEP 517 hooks run as a build frontend runs them inside an isolated build environment, where
# torch is not installed: here torch is made unimportable instead (no network needed).
NO_TORCH_BUILD = """
import sys
sys.modules["torch"] = None
from setuptools import build_meta
print(getattr(build_meta, sys.argv[1])(sys.argv[2]))
"""


@pytest.fixture(scope="module")
def isolated_wheel(tmp_path_factory):
    """sdist from a copy of the checkout, then the wheel from the unpacked sdist (as `python -m
    build` does), both with torch unimportable; returns (wheel path, build stderr)."""
    base = tmp_path_factory.mktemp("isolated")
    src = copy_source(base / "src")
    dist = base / "dist"
    sdist = run([sys.executable, "-c", NO_TORCH_BUILD, "build_sdist", str(dist)], src)
    name = sdist.stdout.strip().splitlines()[-1]
    shutil.unpack_archive(dist / name, base / "unpacked")
    unpacked = next((base / "unpacked").iterdir())
    wheel = run([sys.executable, "-c", NO_TORCH_BUILD, "build_wheel", str(dist)], unpacked)
    return dist / wheel.stdout.strip().splitlines()[-1], sdist.stderr + wheel.stderr


@pytest.fixture(scope="module")
def installed(isolated_wheel, tmp_path_factory):
    """The isolated wheel installed offline into a folder of its own (put first on PYTHONPATH)."""
    site = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(isolated_wheel[0])], site, OFFLINE)
    return site


def test_isolated_build_is_pure_python_with_sources(isolated_wheel):
    wheel, log = isolated_wheel
    assert wheel.name == "fastliif-0.1.0-py3-none-any.whl", wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd", ".o"))], names
    csrc = ROOT / "csrc"
    shipped = {f"fastliif/csrc/{p.relative_to(csrc).as_posix()}" for p in csrc.rglob("*")
               if p.suffix in (".cpp", ".h", ".hpp", ".cu", ".cuh")}
    assert shipped and shipped <= set(names), shipped - set(names)
    for needed in ("fastliif/kernels/__init__.py", "fastliif/assets/liif-edsr-baseline.pth", "fastliif/_build.py",
                   "fastliif/commands/build_ext.py"):
        assert needed in names, needed
    meta = zipfile.ZipFile(wheel).read("fastliif-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: torch>=2.4" in meta, meta[:2000]
    import setuptools
    spdx = int(setuptools.__version__.split(".")[0]) >= 77
    assert ("License-Expression: BSD-3-Clause" if spdx else "License: BSD-3-Clause") in meta, meta[:2000]
    assert "SetuptoolsDeprecationWarning" not in log, log


def probe(site, code, cache, env_extra=None, ok=True):
    env = {"PYTHONPATH": str(site), "FASTLIIF_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    return run([sys.executable, "-c", textwrap.dedent(code)], site.parent, env, ok=ok)


# Fresh random inputs; prints how many compiled-kernel notices the two calls produced.
QUERY = """
    import sys, torch, fastliif
    from fastliif import _ext
    assert fastliif.__file__.startswith({site!r}), fastliif.__file__
    torch.manual_seed(0)
    feat = torch.randn(2, 4, 5, 3, requires_grad=True)
    coord = torch.rand(2, 17, 2) * 2 - 1
    cell = fastliif.reference.make_cell(coord, (11, 7))
    w = [(torch.randn(16, 40) * 0.3).requires_grad_(), (torch.randn(3, 16) * 0.3).requires_grad_()]
    b = [torch.randn(16) * 0.1, torch.randn(3) * 0.1]
    out = fastliif.ops.liif_query(feat, coord, cell, w, b, backend="auto")
    ref = fastliif.ops.liif_query(feat, coord, cell, w, b, backend="torch")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.autograd.grad(out.square().sum(), [feat] + w)
    g_ref = torch.autograd.grad(ref.square().sum(), [feat] + w)
    for a, r in zip(g, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
    fastliif.ops.liif_query(feat, coord, cell, w, b)
    print("HAS_EXT", _ext.HAS_EXT, "|", _ext.describe())
"""


def test_no_compiler_falls_back_to_torch_with_one_notice(installed, tmp_path):
    cache = tmp_path / "cache"
    # a build lock orphaned by a killed compile (torch's load() would wait on it forever)
    folder = Path(probe(installed, "from fastliif import _ext; print(_ext.build_dir())", cache).stdout.strip())
    folder.mkdir(parents=True)
    (folder / "lock").touch()
    os.utime(folder / "lock", (time.time() - 3600,) * 2)
    first = probe(installed, QUERY.format(site=str(installed)), cache, {"CXX": "/bin/false"})
    assert "HAS_EXT False" in first.stdout, first.stdout
    # the first use of the cpu backend tried to compile (that is the rule), failed, said so once
    notices = [line for line in first.stderr.splitlines() if line.startswith("fastliif: no compiled kernels")]
    assert len(notices) == 1, first.stderr
    assert "compiling the C++ kernels failed" in notices[0] and "running on the torch backend" in notices[0]
    assert "fastliif: compiling" in first.stderr and "Traceback" not in first.stderr, first.stderr
    # a later process does not retry the failed compile, and still says why once
    second = probe(installed, QUERY.format(site=str(installed)), cache, {"CXX": "/bin/false"})
    assert "fastliif: compiling" not in second.stderr, second.stderr
    assert second.stderr.count("fastliif: no compiled kernels") == 1, second.stderr
    assert "an earlier compile failed" in second.stderr, second.stderr
    # the command names the problem in one line, exit 2, no traceback
    cmd = run([sys.executable, "-m", "fastliif", "build-ext"], installed.parent,
              {"PYTHONPATH": str(installed), "FASTLIIF_CACHE": str(cache), "CXX": "/bin/false"}, ok=False)
    assert cmd.returncode == 2 and "Traceback" not in cmd.stderr, cmd.stderr
    assert cmd.stderr.strip().splitlines()[-1].startswith("fastliif build-ext: error: "), cmd.stderr


def test_build_ext_compiles_into_cache_and_cpu_backend_runs(installed, tmp_path):
    cache = tmp_path / "cache"
    start = time.perf_counter()
    built = run([sys.executable, "-m", "fastliif", "build-ext"], installed.parent,
                {"PYTHONPATH": str(installed), "FASTLIIF_CACHE": str(cache)})
    print(f"first-use compile: {time.perf_counter() - start:.0f} s")
    assert "compiled: " in built.stdout and str(cache) in built.stdout, built.stdout
    libs = list(cache.rglob("fastliif_C.so"))
    assert len(libs) == 1, libs
    # a new process loads the cached build at import and runs the cpu backend; never compiles
    out = probe(installed, textwrap.dedent(QUERY.format(site=str(installed))) + textwrap.dedent("""
        from fastliif.ops._backends import resolve
        assert resolve("auto", torch.device("cpu"), torch.float32) == "cpu"
        image = torch.rand(2, 3, 6, 5, dtype=torch.float64)
        kernel = torch.rand(2, 3 * 3 * 2 * 2, 6, 5, dtype=torch.float64)
        args = dict(kernel_size=3, scale=2)
        torch.testing.assert_close(fastliif.ops.dynamic_conv(image, kernel, backend="cpu", **args),
                                   fastliif.ops.dynamic_conv(image, kernel, backend="torch", **args))
    """), cache, {"FASTLIIF_JIT": "0"})
    assert f"HAS_EXT True | first-use build loaded from {libs[0]}" in out.stdout, out.stdout
    assert "fastliif:" not in out.stderr, out.stderr
    again = run([sys.executable, "-m", "fastliif", "build-ext"], installed.parent,
                {"PYTHONPATH": str(installed), "FASTLIIF_CACHE": str(cache)})
    assert "already compiled" in again.stdout, again.stdout


def test_setup_sh_needs_no_network_when_everything_is_there(tmp_path):
    """A provisioned machine (all requirements, fastliif installed from this checkout with a
    current extension) sets up with pip unable to reach any index, and does not rebuild."""
    import fastliif._ext as ext
    if ext.LOADED_FROM != "fastliif._C":
        pytest.skip("needs the ahead-of-time extension fastliif._C (scripts/setup.sh builds it)")
    src = copy_source(tmp_path / "src")
    lib = Path(sys.modules["fastliif._C"].__file__)
    shutil.copy(lib, src / "fastliif" / lib.name)  # fresh mtime: newer than every copied source
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    Path(site, "fastliif-src.pth").write_text(str(src) + "\n")  # as an editable install of the copy would
    start = time.perf_counter()
    proc = run(["bash", str(src / "scripts" / "setup.sh")], tmp_path, dict(OFFLINE, PYTHON=str(py)))
    seconds = time.perf_counter() - start
    assert "nothing to install" in proc.stdout and "build skipped" in proc.stdout, proc.stdout + proc.stderr
    assert "fastliif._C loaded (built at install)" in proc.stdout, proc.stdout
    assert seconds < 60, f"setup.sh took {seconds:.0f} s on a machine that needed nothing"


def test_aot_extension_leaves_standard_and_limited_api_to_torch(tmp_path):
    """setup.py's extension: no -std (torch passes the standard its headers need; C++17 made them
    warn), no -DPy_LIMITED_API (BuildExtension defines it; defining it too warned "redefined"),
    and the wheel's abi3 tag matches the value torch defines."""
    out = run([sys.executable, "-c", textwrap.dedent("""
        import runpy, setuptools
        from torch.utils import cpp_extension
        seen = {}
        setuptools.setup = lambda **kw: seen.update(kw)
        runpy.run_path("setup.py")
        ext, = seen["ext_modules"]
        flags = ext.extra_compile_args["cxx"] if isinstance(ext.extra_compile_args, dict) else ext.extra_compile_args
        assert ext.py_limited_api
        assert not [f for f in flags if f.startswith("-std") or "Py_LIMITED_API" in f], flags
        assert not [d for d in ext.define_macros if d[0] == "Py_LIMITED_API"], ext.define_macros
        v = int(cpp_extension.min_supported_cpython, 16)
        assert seen["options"]["bdist_wheel"]["py_limited_api"] == f"cp{v >> 24}{(v >> 16) & 255}", seen["options"]
        print("ok")
    """)], ROOT)
    assert out.stdout.strip().endswith("ok"), out.stdout
