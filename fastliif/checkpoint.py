"""Official LIIF checkpoints: ``{'model': {'name': 'liif', 'args': {...}, 'sd': state_dict}, ...}``."""
import os
import pickle

import torch

from .nn.liif import LIIF


def _fail(path, msg):
    raise ValueError(f"{path}: {msg}")


def load_checkpoint(path, *, map_location="cpu", backend="auto", trusted=False):
    """Load an official-format LIIF checkpoint into a fused ``fastliif.nn.LIIF``.

    Loads with ``weights_only=True`` (no arbitrary code); pass ``trusted=True`` to fall back
    to full unpickling for a file you trust that needs it.
    """
    saved = read_checkpoint(path, map_location=map_location, trusted=trusted)
    spec = saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(spec, dict) or not {"name", "args", "sd"} <= set(spec):
        _fail(path, "expected the official LIIF format {'model': {'name', 'args', 'sd'}}")
    return _liif_from_spec(path, spec, backend)


def _liif_from_spec(path, spec, backend):
    if spec["name"] != "liif":
        _fail(path, f"holds a {spec['name']!r} model; load_checkpoint reads 'liif' models")
    args = dict(spec["args"])
    if "encoder_spec" not in args:
        _fail(path, "model args have no 'encoder_spec'")
    try:
        model = LIIF(**args, backend=backend)
    except (KeyError, TypeError, ValueError) as exc:
        _fail(path, f"cannot build the model from its args {args}: {type(exc).__name__}: {exc}")
    try:
        missing, unexpected = model.load_state_dict(spec["sd"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        _fail(path, f"state_dict does not fit the model: {exc}")
    if missing or unexpected:
        _fail(path, f"state_dict does not match the model: missing {missing}, unexpected {unexpected}")
    return model


def read_checkpoint(path, *, map_location="cpu", trusted=False):
    """The raw dict of a checkpoint file, loaded with ``weights_only`` unless ``trusted``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        _fail(path, f"cannot be loaded safely (weights_only=True): {exc}. "
                    "Pass trusted=True only if you trust where the file came from.")
    except Exception as exc:
        _fail(path, f"is not a readable PyTorch checkpoint: {type(exc).__name__}: {exc}")


def load_model(path, *, map_location="cpu", backend="auto", trusted=False, key="model"):
    """Build any registered model from a ``{key: {'name', 'args', 'sd'}}`` checkpoint (the official
    LIIF format, which fastliif's trainer writes for every model). LIIF loads as the fused
    module; ``backend`` is passed to models that take one."""
    saved = read_checkpoint(path, map_location=map_location, trusted=trusted)
    spec = saved.get(key) if isinstance(saved, dict) else None
    if not isinstance(spec, dict) or not {"name", "args", "sd"} <= set(spec):
        _fail(path, f"expected the official LIIF format {{{key!r}: {{'name', 'args', 'sd'}}}}")
    if spec["name"] == "liif" and key == "model":
        return _liif_from_spec(path, spec, backend)
    from .models import make
    try:
        model = make({"name": spec["name"], "args": spec["args"]})
    except (KeyError, TypeError, ValueError) as exc:
        _fail(path, f"cannot build {spec['name']!r} from its args {spec['args']}: {type(exc).__name__}: {exc}")
    if hasattr(model, "backend"):  # the fused modules (udvd, ...)
        model.backend = backend
    try:
        model.load_state_dict(spec["sd"])
    except RuntimeError as exc:
        _fail(path, f"state_dict does not fit the model: {exc}")
    return model


def save_model(model, spec, path, **extra):
    """Save any model as ``{'model': {'name', 'args', 'sd'}}`` (``spec`` = the name and args it was
    built from)."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model": {"name": spec["name"], "args": dict(spec.get("args") or {}), "sd": sd}, **extra}, path)


def save_checkpoint(model, path, **extra):
    """Save a LIIF (fused or reference) in the official format, loadable by both codebases."""
    args = {"encoder_spec": model.encoder_spec, "imnet_spec": model.imnet_spec,
            "local_ensemble": model.local_ensemble, "feat_unfold": model.feat_unfold,
            "cell_decode": model.cell_decode}
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model": {"name": "liif", "args": args, "sd": sd}, **extra}, path)
