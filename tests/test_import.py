"""`import fastliif` without the compiled extension or Triton; `python -m fastliif.env`."""
import os
import subprocess
import sys
import textwrap

import pytest

HIDE_EXT = "import sys; sys.modules['fastliif._C'] = None  # makes `from . import _C` raise ImportError\n"


def hidden_ext(code):
    return HIDE_EXT + textwrap.dedent(code)


def run_python(code, *args, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    cmd = [sys.executable] + (["-c", code] if code is not None else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_import_without_extension(tmp_path):
    out = run_python(hidden_ext("""
        import torch
        import fastliif
        from fastliif import _ext
        from fastliif.ops import availability
        from fastliif.reference import make_cell, query_rgb_reference
        assert not _ext.HAS_EXT
        assert "fastliif._C" in _ext.EXT_ERROR, _ext.EXT_ERROR
        avail = availability()
        assert avail["torch"][0] and not avail["cpu"][0], avail

        torch.manual_seed(0)
        feat = torch.randn(2, 4, 5, 3)
        coord = torch.rand(2, 17, 2) * 2 - 1
        cell = make_cell(coord, (11, 7))
        dims = [4 * 9 + 4, 16, 3]
        weights = [torch.randn(o, i) * 0.3 for i, o in zip(dims[:-1], dims[1:])]
        biases = [torch.randn(o) * 0.1 for o in dims[1:]]
        out = fastliif.ops.liif_query(feat, coord, cell, weights, biases, backend="auto")

        mlp = torch.nn.Sequential(torch.nn.Linear(dims[0], 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        with torch.no_grad():
            for lin, w, b in zip(mlp[::2], weights, biases):
                lin.weight.copy_(w); lin.bias.copy_(b)
            ref = query_rgb_reference(feat, coord, cell, mlp)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fastliif.ops.liif_query(feat, coord, cell, weights, biases, backend="torch"), out)

        try:
            fastliif.ops.liif_query(feat, coord, cell, weights, biases, backend="cpu")
        except RuntimeError as exc:
            msg = str(exc)
            assert "cpu" in msg and "not available" in msg, msg
        else:
            raise AssertionError("backend='cpu' ran without the extension")

        # the drop-in module and swap work too
        enc = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 1, "n_feats": 4}}
        imnet = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}
        model = fastliif.reference.LIIF(enc, imnet)
        inp = torch.rand(2, 3, 5, 3)
        with torch.no_grad():
            expected = model(inp, coord, cell)
            assert fastliif.swap(model) == [""]
            torch.testing.assert_close(model(inp, coord, cell), expected, rtol=1e-5, atol=1e-6)
        print("OK", "triton" in sys.modules)
    """), cwd=str(tmp_path))
    assert out.split() == ["OK", "False"]


def test_env_reports_backends(tmp_path):
    out = run_python(None, "-m", "fastliif.env", cwd=str(tmp_path))
    assert "fastliif" in out and "torch" in out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ")}
    assert rows.get("torch") == "yes", out
    assert "cpu" in rows, out
    assert set(rows) >= {"torch", "cpu", "triton", "cuda"}, out


def test_env_without_extension(tmp_path):
    out = run_python(hidden_ext("""
        import runpy
        runpy.run_module("fastliif.env", run_name="__main__")
    """), cwd=str(tmp_path))
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ")}
    assert rows["torch"] == "yes" and rows["cpu"] == "no", out
    assert "fastliif._C" in out and "extension not built" in out, out


def test_import_does_not_import_triton(tmp_path):
    # A stand-in triton package on the path: findable, so fastliif sees Triton as installed,
    # and any import of it shows up in sys.modules.
    fake = tmp_path / "fake" / "triton"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '0.0.fake'\n")
    out = run_python(textwrap.dedent("""
        import sys
        import torch
        assert "triton" not in sys.modules, "torch itself imported triton"
        import fastliif
        import fastliif.env
        assert fastliif._ext.has_triton()
        text = fastliif.env.report()
        torch.manual_seed(0)
        feat = torch.randn(1, 2, 3, 4)
        coord = torch.rand(1, 5, 2) * 2 - 1
        cell = torch.full((1, 5, 2), 0.1)
        w = [torch.randn(8, 2 * 9 + 4), torch.randn(3, 8)]
        b = [torch.randn(8), torch.randn(3)]
        fastliif.ops.liif_query(feat, coord, cell, w, b)
        fastliif.ops.liif_query(feat, coord, cell, w, b, backend="torch")
        print("triton" in sys.modules)
    """), env_extra={"PYTHONPATH": str(tmp_path / "fake")}, cwd=str(tmp_path))
    assert out.strip() == "False"


def test_import_does_not_import_triton_real(tmp_path):
    out = run_python("import sys, fastliif; print('triton' in sys.modules)", cwd=str(tmp_path))
    assert out.strip() == "False"


def test_triton_without_gpu_or_interpreter_is_clear(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: triton is available")
    out = run_python(textwrap.dedent("""
        import torch, fastliif
        ok, reason = fastliif.ops.availability()["triton"]
        print(ok)
        feat = torch.randn(1, 2, 3, 4)
        coord = torch.rand(1, 5, 2) * 2 - 1
        try:
            fastliif.ops.liif_query(feat, coord, coord, [torch.randn(3, 22)], [torch.randn(3)], backend="triton")
        except RuntimeError as exc:
            print(exc)
    """), env_extra={"TRITON_INTERPRET": "0"}, cwd=str(tmp_path))
    assert out.splitlines()[0] == "False"
    assert "backend 'triton' is not available" in out


@pytest.mark.parametrize("backend", ["cuda"])
def test_unavailable_backend_is_clear(backend):
    import torch

    import fastliif
    avail = fastliif.ops.availability()
    if avail[backend][0]:
        pytest.skip(f"{backend} is available here")  # only on GPU machines
    feat = torch.randn(1, 2, 3, 4)
    coord = torch.rand(1, 5, 2) * 2 - 1
    cell = torch.full((1, 5, 2), 0.1)
    w = [torch.randn(3, 2 * 9 + 4)]
    b = [torch.randn(3)]
    with pytest.raises(RuntimeError, match=f"{backend}.*not available"):
        fastliif.ops.liif_query(feat, coord, cell, w, b, backend=backend)


def test_ext_off_is_the_torch_backend_without_a_word(tmp_path):
    # FASTLIIF_EXT=off: no compiled kernels, no compile attempt, no notice (it was asked for)
    code = textwrap.dedent("""
        import torch, fastliif
        from fastliif import _ext
        from fastliif.ops._backends import resolve
        assert not _ext.HAS_EXT and "FASTLIIF_EXT=off" in _ext.EXT_ERROR, _ext.EXT_ERROR
        assert resolve("auto", torch.device("cpu"), torch.float32) == "torch"
        assert not fastliif.ops.availability()["cpu"][0]
        print("OK")
    """)
    env = dict(os.environ, FASTLIIF_EXT="off", FASTLIIF_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stdout + proc.stderr
    assert "fastliif:" not in proc.stderr, proc.stderr
    assert not (tmp_path / "cache").exists()
