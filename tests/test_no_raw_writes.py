"""Static audit: every file the package writes goes through fastliif.atomic.

Parses fastliif/**/*.py, kernels/, benchmarks/ and scripts/*.py and fails on any call that writes
a file by itself (open(..., "w"/"a"/"x"/"+"), torch.save / np.save / PIL .save / .savefig /
json.dump / pickle.dump to a path or raw file, h5py.File(..., "w"), memory maps opened for writing,
Path.write_text, shutil.copy, os.open with write flags, ...). A call is fine when its destination
is a name bound by the helper itself: ``with atomic_write(p) as f``, ``with atomic_path(p) as tmp``,
``tmp = stack.enter_context(atomic_path(p))``, or an in-memory buffer (``io.BytesIO()``).
fastliif/atomic.py, the helper, is the only file that may write directly. Not audited: scratch
files from ``tempfile`` (deleted by construction), kernel control files under /proc and /sys
(nothing to lose, and no temporary can be made there), writes to sys.stdout / sys.stderr.
"""
import ast
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = os.path.join("fastliif", "atomic.py")

# True exceptions: (relative path, function name) -> why the raw write is right there. Keep it short.
ALLOWED = {}

WRITE_MODE_CHARS = set("wax+")
SAFE_FACTORIES = {"atomic_write", "atomic_path", "BytesIO", "StringIO"}
# call name -> (index of the destination argument, keyword names it may be passed as)
DEST_ARG = {
    "save": (0, ("fp", "file", "filename", "f")),            # PIL Image.save, np.save
    "savez": (0, ("file",)), "savez_compressed": (0, ("file",)), "savetxt": (0, ("fname",)),
    "savefig": (0, ("fname",)), "imsave": (0, ("fname", "uri")), "imwrite": (0, ("uri", "filename")),
    "tofile": (0, ("fid", "file")), "FileHandler": (0, ("filename",)),
    "dump": (1, ("fp", "stream", "file", "f")), "safe_dump": (1, ("stream",)),   # json / pickle / yaml
    "copy": (1, ("dst",)), "copy2": (1, ("dst",)), "copyfile": (1, ("dst",)), "move": (1, ("dst",)),
    "copytree": (1, ("dst",)), "export": (1, ("f",)),         # torch.onnx.export
}
# names whose call writes only when given a write mode: name -> (mode arg index, mode keyword, default)
MODE_CALLS = {"open": (1, "mode", "r"), "File": (1, "mode", "r"), "open_memmap": (1, "mode", "r+"),
              "memmap": (2, "mode", "r+"), "ZipFile": (1, "mode", "r")}
OS_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


def _name(func):
    """(called name, the name it is an attribute of): open -> ('open', None), os.open -> ('open', 'os'),
    np.lib.format.open_memmap -> ('open_memmap', 'format'), Path(p).open -> ('open', '')."""
    if isinstance(func, ast.Name):
        return func.id, None
    if isinstance(func, ast.Attribute):
        base = func.value
        return func.attr, base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
    return None, None


def _scope_nodes(scope):
    """The nodes of one function (or the module) without those of functions defined inside it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(ast.iter_child_nodes(node))


def _arg(call, index, keywords):
    for kw in call.keywords:
        if kw.arg in keywords:
            return kw.value
    return call.args[index] if len(call.args) > index else None


def _made_by_helper(value):
    """Is ``value`` a call to atomic_write/atomic_path/BytesIO (possibly via stack.enter_context)?"""
    if not isinstance(value, ast.Call):
        return False
    name, _ = _name(value.func)
    if name == "enter_context" and value.args:
        return _made_by_helper(value.args[0])
    return name in SAFE_FACTORIES


def _safe_names(scope):
    safe = set()
    for node in _scope_nodes(scope):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if _made_by_helper(item.context_expr) and isinstance(item.optional_vars, ast.Name):
                    safe.add(item.optional_vars.id)
        elif isinstance(node, ast.Assign) and _made_by_helper(node.value):
            safe.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.NamedExpr) and _made_by_helper(node.value):
            safe.add(node.target.id)
    return safe


def _is_safe(dest, safe):
    if isinstance(dest, ast.Constant) and isinstance(dest.value, str) and dest.value.startswith(("/proc/", "/sys/")):
        return True  # kernel control files (/proc/self/clear_refs): no data, and no temp file can exist there
    if isinstance(dest, ast.Attribute) and isinstance(dest.value, ast.Name) and dest.value.id == "sys":
        return dest.attr in ("stdout", "stderr")  # a stream, not a file the package owns
    return isinstance(dest, ast.Name) and dest.id in safe


def _writes_by_mode(call, name, mode_index, mode_kw, default):
    mode = _arg(call, mode_index, (mode_kw,))
    if mode is None:
        mode_text = default
    elif isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        mode_text = mode.value
    else:
        return True  # a computed mode: cannot prove it only reads
    return bool(set(mode_text) & WRITE_MODE_CHARS)


def _os_open_writes(call):
    flags = _arg(call, 1, ("flags",))
    if flags is None:
        return False
    return any(isinstance(n, ast.Attribute) and n.attr in OS_WRITE_FLAGS for n in ast.walk(flags)) or \
        any(isinstance(n, ast.Name) and n.id in OS_WRITE_FLAGS for n in ast.walk(flags))


def raw_writes(source):
    """(line, function, reason) of every raw file write in ``source``."""
    tree = ast.parse(source)
    hits = []

    def visit(scope, func_name):
        safe = _safe_names(scope)
        for node in _scope_nodes(scope):
            if not isinstance(node, ast.Call):
                continue
            name, base = _name(node.func)
            reason = None
            if name in ("write_text", "write_bytes") and base not in ("atomic",):
                reason = f".{name}() writes in place"
            elif name == "open" and base == "os":
                if _os_open_writes(node) and not _is_safe(_arg(node, 0, ("path",)), safe):
                    reason = "os.open with write flags"
            elif name == "open" and base not in (None, "io", "gzip", "bz2", "lzma", "tarfile", "codecs"):
                # Path(...).open(mode): the receiver is the destination, the mode is argument 0
                mode = _arg(node, 0, ("mode",))
                if isinstance(mode, ast.Constant) and isinstance(mode.value, str) \
                        and set(mode.value) & WRITE_MODE_CHARS:
                    reason = f"{base}.open for writing"
            elif name in MODE_CALLS:
                index, kw, default = MODE_CALLS[name]
                if _writes_by_mode(node, name, index, kw, default) and not _is_safe(_arg(node, 0, ("file", "name",
                                                                                                 "filename")), safe):
                    reason = f"{name}(...) opened for writing"
            elif name == "save" and base == "torch" or name == "save" and base == "jit":
                if not _is_safe(_arg(node, 1, ("f",)), safe):
                    reason = "torch.save to a path or raw file"
            elif name in DEST_ARG:
                if name in ("dump", "safe_dump") and base not in ("json", "pickle", "yaml", "torch"):
                    continue
                if name in ("copy", "move") and base != "shutil":
                    continue
                if name == "export" and base != "onnx":
                    continue
                index, kws = DEST_ARG[name]
                dest = _arg(node, index, kws)
                if dest is not None and not _is_safe(dest, safe):
                    reason = f"{base + '.' if base else ''}{name}(...) writes to a path or raw file"
            if reason:
                hits.append((node.lineno, func_name, reason))

    visit(tree, "<module>")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit(node, node.name)
    return sorted(set(hits))


def _audited_files():
    files = []
    for top in ("fastliif", "kernels", "benchmarks"):
        for root, dirs, names in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not os.path.islink(os.path.join(root, d)))
            files += [os.path.join(root, n) for n in names if n.endswith(".py")]
    scripts = os.path.join(ROOT, "scripts")
    if os.path.isdir(scripts):
        files += [os.path.join(scripts, n) for n in os.listdir(scripts) if n.endswith(".py")]
    rels = sorted(os.path.relpath(f, ROOT) for f in files)
    return [r for r in rels if r != HELPER]


def test_package_writes_files_only_through_fastliif_atomic():
    files = _audited_files()
    assert "fastliif/data/patches.py" in files and "kernels/liif_query.py" in files and HELPER not in files
    found = []
    for rel in files:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            source = f.read()
        lines = source.splitlines()
        for line, func, reason in raw_writes(source):
            if (rel, func) not in ALLOWED:
                found.append(f"{rel}:{line} ({func}): {reason}: {lines[line - 1].strip()}")
    assert not found, "files written without fastliif.atomic:\n" + "\n".join(found)


# ---------------------------------------------------------------------------------------------
# the detector itself: each pattern is caught, each helper use is not

RAW = [
    'open(path, "w")', 'open(path, "wb")', 'open(path, mode="a")', 'open(path, "x")', 'open(path, "r+b")',
    'open(path, m)', 'io.open(path, "w")', 'Path(p).open("w")', 'p.write_text("x")', 'p.write_bytes(b)',
    'torch.save(obj, path)', 'torch.save(obj, "x.pt")', 'torch.jit.save(m, path)', 'np.save(path, a)',
    'np.savez(path, a=a)', 'np.savetxt(path, a)', 'a.tofile(path)', 'img.save(path)',
    'Image.fromarray(a).save(os.path.join(d, "x.png"), quality=95)', 'fig.savefig(path, dpi=100)',
    'plt.savefig("x.png")', 'json.dump(obj, open(path, "w"))', 'json.dump(obj, f)', 'pickle.dump(obj, f)',
    'yaml.safe_dump(cfg, f)', 'h5py.File(path, "w")', 'h5py.File(path, mode="a")', 'open_memmap(p, mode="w+")',
    'np.memmap(p, dtype=np.uint8, mode="w+", shape=(3,))', 'np.lib.format.open_memmap(p, "w+", np.float32, (3,))',
    'shutil.copy(a, b)', 'shutil.move(a, b)', 'os.open(p, os.O_WRONLY | os.O_CREAT)',
    'logging.FileHandler(path)', 'open("/tmp/x", "w")', 'imageio.imwrite(path, a)', 'zipfile.ZipFile(path, "w")',
    'gzip.open(path, "wt")', 'tarfile.open(path, "w:gz")',
]
SAFE = [
    'open(path)', 'open(path, "rb")', 'open(path, "r", encoding="utf-8")', 'h5py.File(path, "r")',
    'np.load(path, mmap_mode="r")', 'json.dumps(obj)', 'json.dump(obj, sys.stdout)', 'tarfile.open(path)',
    'gzip.open(path, "rt")', 'open("/proc/self/clear_refs", "w")',
    'os.open(p, os.O_RDONLY)', 'torch.load(path, weights_only=True)', 'Image.open(path)',
    'img.save(buf)',
]


@pytest.mark.parametrize("code", RAW)
def test_detector_flags_raw_write(code):
    assert raw_writes(f"def f():\n    {code}\n"), code


@pytest.mark.parametrize("code", SAFE)
def test_detector_passes_reads(code):
    src = f"def f():\n    buf = io.BytesIO()\n    {code}\n"
    assert raw_writes(src) == [], code


def test_detector_passes_writes_through_the_helper():
    src = textwrap.dedent('''
        def f(path, obj, img, fig, stack):
            with atomic_write(path) as f:
                torch.save(obj, f)
                json.dump(obj, f)
            with atomic_write(path, "wb") as g:
                img.save(g, format="PNG")
                fig.savefig(g, format="png")
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
                h.create_dataset("x", data=obj)
            tmp2 = stack.enter_context(atomic_path(path))
            m = open_memmap(tmp2, mode="w+", dtype="f4", shape=(3,))
            fd = os.open(tmp2, os.O_RDWR)
            save_image(img, path)
            save_torch(obj, path)
            write_json(path, obj)
    ''')
    assert raw_writes(src) == []
    # a name is safe only in the function that bound it
    assert raw_writes(src + "\ndef g(f, obj):\n    torch.save(obj, f)\n") == [(19, "g", "torch.save to a path "
                                                                                  "or raw file")]
