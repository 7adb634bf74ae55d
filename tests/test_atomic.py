"""fastliif.atomic: kills, full disks, concurrent writers and exceptions never damage the old file."""
import errno
import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from fastliif import atomic
from fastliif.atomic import DiskFullError, atomic_path, atomic_write, save_torch, write_json, write_text

OLD = b"old content\n" * 1000


def _leftovers(folder, name):
    return [f for f in os.listdir(folder) if f != name]


def _child(code, *args):
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env)


def _wait_for(path, proc, timeout=60):
    t0 = time.monotonic()
    while not os.path.exists(path):
        assert proc.poll() is None, f"writer exited early with {proc.returncode}"
        assert time.monotonic() - t0 < timeout, "writer never got mid-write"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["bytes", "torch"])
def test_sigkill_mid_write_leaves_old_file(tmp_path, how):
    target, ready = tmp_path / "out.bin", tmp_path.parent / f"{tmp_path.name}.ready"
    target.write_bytes(OLD)
    # The child writes half a new payload, signals, then blocks until it is SIGKILLed.
    proc = _child("""
        import importlib.util, sys, time
        path, ready, how, src = sys.argv[1:]
        spec = importlib.util.spec_from_file_location("atomic", src)   # the module alone: fast to start
        spec.loader.exec_module(mod := importlib.util.module_from_spec(spec))
        atomic_write = mod.atomic_write

        class Stall:                       # a file object that stalls once 1 MB is written
            def __init__(self, f): self.f, self.n = f, 0
            def write(self, b):
                n = self.f.write(b)
                self.n += n
                if self.n > 1 << 20:
                    self.f.flush()
                    open(ready, "w").close()
                    time.sleep(600)
                return n
            def __getattr__(self, name): return getattr(self.f, name)

        with atomic_write(path, "wb") as f:
            if how == "bytes":
                f.write(b"N" * (2 << 20))
                f.flush()
                open(ready, "w").close()
                time.sleep(600)
            else:
                import torch
                torch.save({"w": torch.randn(1 << 20)}, Stall(f))
        """, target, ready, how, atomic.__file__)
    try:
        _wait_for(ready, proc)
        tmps = _leftovers(tmp_path, "out.bin")
        assert len(tmps) == 1 and tmps[0].startswith(".out.bin.") and tmps[0].endswith(".tmp")
        assert (tmp_path / tmps[0]).stat().st_size > 0          # really mid-write
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ready.unlink(missing_ok=True)
    assert target.read_bytes() == OLD
    # A SIGKILL runs no cleanup: the temporary stays, hidden, never under the target's name.
    assert all(f.startswith(".out.bin.") for f in _leftovers(tmp_path, "out.bin"))


class _FullDisk(io.RawIOBase):
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (a full filesystem)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def writable(self):
        return True

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def fileno(self):
        return self.f.fileno()

    def flush(self):
        self.f.flush()

    def close(self):
        super().close()                  # flushes through self.flush while self.f is still open
        self.f.close()


@pytest.fixture
def full_disk(monkeypatch):
    real = os.fdopen

    def fdopen(fd, mode="r", encoding=None):
        disk = _FullDisk(real(fd, "wb"), 4096)
        return disk if "b" in mode else io.TextIOWrapper(disk, encoding=encoding)
    monkeypatch.setattr(atomic.os, "fdopen", fdopen)


@pytest.mark.parametrize("writer", ["bytes", "text", "json", "torch"])
def test_disk_full_raises_diskfullerror_and_keeps_old_file(tmp_path, full_disk, writer):
    target = tmp_path / "out.dat"
    target.write_bytes(OLD)
    with pytest.raises(DiskFullError, match=f"disk full while writing {target}") as info:
        if writer == "bytes":
            with atomic_write(target) as f:
                f.write(b"x" * 100_000)
        elif writer == "text":
            write_text(target, "y" * 100_000)
        elif writer == "json":
            write_json(target, list(range(100_000)))
        else:  # torch.save hides the ENOSPC in a RuntimeError's context
            save_torch({"w": torch.randn(100_000)}, target)
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path, "out.dat") == []


def test_disk_full_at_fsync_and_at_create(tmp_path, monkeypatch):
    target = tmp_path / "out.dat"
    target.write_bytes(OLD)

    def fsync(fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "fsync", fsync)
        with pytest.raises(DiskFullError, match="out.dat"):
            with atomic_write(target) as f:
                f.write(b"new")
    assert target.read_bytes() == OLD and _leftovers(tmp_path, "out.dat") == []

    def mkstemp(**kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    with pytest.raises(DiskFullError, match=f"cannot write {target}"):
        write_text(target, "new")
    assert target.read_bytes() == OLD


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    target = tmp_path / "shared.bin"
    size = 16 * 16384
    payloads = {bytes([65 + k]) * size for k in range(2)}
    writers = [_child("""
        import importlib.util, sys
        path, k, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        spec = importlib.util.spec_from_file_location("atomic", src)   # the module alone: no torch import
        spec.loader.exec_module(mod := importlib.util.module_from_spec(spec))
        atomic_write = mod.atomic_write
        for _ in range(40):
            with atomic_write(path) as f:
                for _ in range(16):          # many small writes: interleaving would show
                    f.write(bytes([65 + k]) * 16384)
        """, target, k, atomic.__file__) for k in range(2)]
    seen = set()
    try:
        while any(w.poll() is None for w in writers):
            if target.exists():
                data = target.read_bytes()   # every read, at any moment, is one payload whole
                assert data in payloads, f"torn file: {len(data)} bytes, {sorted(set(data))}"
                seen.add(data[:1])
            time.sleep(0.002)                # leave the 2 cores to the writers
        assert [w.wait(60) for w in writers] == [0, 0]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert target.read_bytes() in payloads and seen   # (seen: the file was read while being rewritten)
    assert _leftovers(tmp_path, "shared.bin") == []


@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt])
def test_exception_in_block_keeps_old_file(tmp_path, exc):
    target = tmp_path / "out.txt"
    target.write_bytes(OLD)
    with pytest.raises(exc):
        with atomic_write(target, "w") as f:
            f.write("half of the new content")
            raise exc("boom")
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path, "out.txt") == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_permissions_match_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
        write_text(tmp_path / "atomic", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == mode == 0o666 & ~umask


def test_existing_file_keeps_its_permissions_and_symlink_is_written_through(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target.name)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640     # as open(target, "w") leaves it
    assert sorted(os.listdir(tmp_path)) == ["data.txt", "link.txt"]


def test_errors_name_the_target(tmp_path, monkeypatch):
    missing = tmp_path / "no" / "such" / "out.png"
    with pytest.raises(FileNotFoundError, match=f"cannot write {missing}: folder .*no/such does not exist"):
        write_text(missing, "x")
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot write {tmp_path / 'folder'}: Is a directory"):
        write_text(tmp_path / "folder", "x")
    assert os.listdir(tmp_path / "folder") == [] and sorted(os.listdir(tmp_path)) == ["folder"]

    def denied(**kw):  # (tests may run as root, for whom a read-only folder is writable)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    with monkeypatch.context() as m:
        m.setattr(atomic.tempfile, "mkstemp", denied)
        with pytest.raises(PermissionError, match=f"cannot write {tmp_path / 'x'}: folder {tmp_path} is not "
                                                  f"writable"):
            write_text(tmp_path / "x", "x")
    long_name = tmp_path / ("n" * 250)                       # a temp name must still fit
    write_text(long_name, "ok")
    assert long_name.read_text() == "ok" and sorted(_leftovers(tmp_path, long_name.name)) == ["folder"]


def test_atomic_path_for_name_based_writers(tmp_path):
    target = tmp_path / "arr.npy"
    np.save(target, np.zeros(3))
    old = target.read_bytes()
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            m = np.lib.format.open_memmap(tmp, mode="w+", dtype=a.dtype, shape=a.shape)
            m[:2] = a[:2]
            m.flush()
            raise RuntimeError("interrupted")
    assert target.read_bytes() == old and _leftovers(tmp_path, "arr.npy") == []
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        m = np.lib.format.open_memmap(tmp, mode="w+", dtype=a.dtype, shape=a.shape)
        m[:] = a
        m.flush()
        del m
    np.testing.assert_array_equal(np.load(target), a)
    assert _leftovers(tmp_path, "arr.npy") == []


FULL_DISK_SCRIPT = """
import os, sys, torch
from fastliif.atomic import DiskFullError, save_torch, write_text
from fastliif.cli import main
disk, src, pca = sys.argv[1:]
old = os.path.join(disk, "old.txt")
write_text(old, "old")
for write in (lambda: write_text(old, "x" * 400_000), lambda: save_torch({"w": torch.randn(100_000)}, old)):
    try:
        write()
        raise SystemExit("no DiskFullError")
    except DiskFullError as exc:
        assert f"disk full while writing {old}" in str(exc), exc
assert open(old).read() == "old" and os.listdir(disk) == ["old.txt"], os.listdir(disk)
assert main(["prepare-udvd", src, os.path.join(disk, "u"), "--patch-size", "32", "--per-image", "40",
             "--pca", pca, "--no-progress"]) == 2
assert main(["prepare-patches", src, os.path.join(disk, "p"), "--crop-size", "16", "--step", "1",
             "--no-progress"]) == 2
assert main(["prepare-patches", src, os.path.join(disk, "p.h5"), "--crop-size", "16", "--step", "2",
             "--no-progress"]) == 2
assert os.listdir(os.path.join(disk, "u")) == [] and os.listdir(os.path.join(disk, "p")) == []
print("OK")
"""


def test_real_full_filesystem(tmp_path):
    # A real 256 KiB tmpfs, mounted in a private mount namespace (gone when the child exits).
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=4k",
                            "tmpfs", str(tmp_path)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs unshare + mount rights); the mocked ENOSPC tests cover it")
    from PIL import Image
    src, disk = tmp_path / "hr", tmp_path / "disk"
    src.mkdir()
    disk.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    (tmp_path / "full.py").write_text(FULL_DISK_SCRIPT)
    from fastliif.data.degradations import compute_pca, save_pca
    save_pca(compute_pca(400), str(tmp_path / "pca.pt"))
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
               FASTLIIF_CACHE=str(tmp_path / "cache"))
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                          f'mount -t tmpfs -o size=256k tmpfs "{disk}" && exec "{sys.executable}" '
                          f'"{tmp_path / "full.py"}" "{disk}" "{src}" "{tmp_path / "pca.pt"}"'],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stderr[-3000:]
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("fastliif prepare-") and "disk full" in e for e in errors), errors
