"""Official LIIF checkpoints: ``{'model': {'name': 'liif', 'args': {...}, 'sd': state_dict}, ...}``.

A checkpoint's ``args`` say how big a model to build, and a small file can ask for a huge one
(``hidden_list: [60000, 60000]``, ``n_resblocks: 10000000``). So loading never trusts them:
integers in the args are bounded, and the model is built under a budget set by the file's own
state_dict: every tensor factory call during construction (``torch.empty`` in each layer, ...)
is checked *before* it allocates, and so is the number of tensors registered. A model that fits
the budget is then compared key by key and shape by shape with the state_dict.

Why not build on the meta device first: construction code runs ops on its tensors (EDSR's
MeanShift: ``torch.eye``, a division, ``copy_``), and on meta those go through Python
decompositions whose first use imports ``torch._dynamo`` (about 5 s per process, measured here),
a cost every ``upscale --model`` run would pay. The budget gives the same guarantee (nothing
beyond the file's own size is ever allocated) with one real build.
"""
import contextlib
import os
import pickle
import threading

import torch
from torch.overrides import TorchFunctionMode

from . import atomic
from .nn.liif import LIIF

MAX_PARAMETERS = 1_000_000_000  # no super-resolution model here comes near (EDSR: 43M, RDN: 22M)
MAX_ARG_INT = 1 << 16  # widths, block counts and sizes in a model's args; anything above is not a real model


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
    if not isinstance(spec["args"], dict):
        _fail(path, f"model args must be a mapping, got {type(spec['args']).__name__}")
    args = dict(spec["args"])
    if "encoder_spec" not in args:
        _fail(path, "model args have no 'encoder_spec'")
    return build_checked(path, lambda: LIIF(**args, backend=backend), spec["sd"], args)


class _OverBudget(Exception):
    pass


# the factories layers allocate their tensors with; checked before they run
_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.empty_strided,
              torch.eye}


def _requested_numel(func, args, kwargs):
    if func is torch.eye:
        n = args[0] if args else kwargs.get("n", 0)
        m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m") or n
        return int(n) * int(m)
    size = kwargs.get("size", args[0] if args else ())
    if isinstance(size, int):  # torch.empty(3, 4)
        size = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
    numel = 1
    for d in size:
        numel *= int(d)
    return numel


class _AllocationBudget(TorchFunctionMode):
    """Refuses (raises _OverBudget) a tensor factory call that would take the values allocated so
    far above ``limit``, before it allocates anything."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.used = limit, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES:
            numel = _requested_numel(func, args, kwargs)
            self.used += numel
            if self.used > self.limit:
                raise _OverBudget(f"a torch.{func.__name__} of {numel:,} values")
        return func(*args, **kwargs)


@contextlib.contextmanager
def _budget(values, tensors):
    """Abort module construction in this thread once it would allocate more than ``values`` values
    or register more than ``tensors`` parameters and buffers (a block count of 10 million would
    take minutes to build even with tiny tensors)."""
    me, count = threading.get_ident(), [0]

    def hook(module, name, tensor):
        if tensor is not None and threading.get_ident() == me:
            count[0] += 1
            if count[0] > tensors:
                raise _OverBudget(f"tensor number {tensors + 1}")

    from torch.nn.modules import module as nn_module
    handles = [nn_module.register_module_parameter_registration_hook(hook),
               nn_module.register_module_buffer_registration_hook(hook)]
    try:
        with _AllocationBudget(values):
            yield
    finally:
        for h in handles:
            h.remove()


def _check_arg_ints(path, value, where):
    if isinstance(value, dict):
        for k, v in value.items():
            _check_arg_ints(path, v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_arg_ints(path, v, f"{where}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARG_INT:
        _fail(path, f"model args {where} = {value} is implausibly large (limit {MAX_ARG_INT}); refusing to build it")


def build_within(build, sd):
    """``build()`` allocating at most about what the state_dict ``sd`` holds (twice its values plus
    1M, and twice its tensors plus 16: room for non-persistent buffers and temporaries, not for a
    model of another size). Raises _OverBudget otherwise, before the big allocation."""
    values = sum(t.numel() for t in sd.values())
    with _budget(min(2 * values + (1 << 20), MAX_PARAMETERS), 2 * len(sd) + 16):
        return build()


def build_checked(path, build, sd, args):
    """``build()``, refused unless the model it makes is the one the state_dict ``sd`` describes.

    ``args`` (the checkpoint's model args) are bounded first; the build runs within the budget of
    :func:`build_within`; then keys and shapes are compared with ``sd`` and ``sd`` is loaded. Every
    refusal is a one-line ValueError naming the file and the offending arg or key.
    """
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        _fail(path, "the state_dict ('sd') must map names to tensors")
    _check_arg_ints(path, args, "")
    try:
        model = build_within(build, sd)
    except _OverBudget as exc:
        _fail(path, f"its model args ask for a bigger model than its state_dict holds ({len(sd)} tensors, "
                    f"{sum(t.numel() for t in sd.values()):,} values): refused {exc} before allocating it"
                    f"{_largest_arg(args)}")
    except (KeyError, TypeError, ValueError) as exc:
        _fail(path, f"cannot build the model from its args {_args_summary(args)}: {type(exc).__name__}: {exc}")
    expected = model.state_dict()
    missing, unexpected, other_shape = state_dict_mismatch(expected, sd)
    if missing or unexpected:
        _fail(path, f"state_dict does not match the model: missing {missing}, unexpected {unexpected}")
    if other_shape:
        k = other_shape[0]
        _fail(path, f"state_dict does not fit the model: {k} has shape {tuple(sd[k].shape)} in the file, "
                    f"{tuple(expected[k].shape)} in the model its args describe")
    model.load_state_dict(sd)
    return model


def state_dict_mismatch(expected, sd):
    """How state_dict ``sd`` differs from a model's own ``expected`` one: (missing keys, unexpected
    keys, keys whose tensor has another shape), each in ``expected``'s / ``sd``'s order. The one
    comparison behind every "does this file fit this model" refusal (loading, fine-tuning)."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    other_shape = [k for k, t in expected.items() if k in sd and
                   (not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(t.shape))]
    return missing, unexpected, other_shape


def _largest_arg(args):
    found = []

    def walk(value, where):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        elif isinstance(value, int) and not isinstance(value, bool):
            found.append((value, where))

    walk(args, "")
    if not found:
        return ""
    value, where = max(found, key=lambda f: f[0])
    return f" (its largest arg: {where} = {value})"


def _args_summary(args):
    text = repr(args)
    return text if len(text) <= 300 else text[:300] + "..."


def read_checkpoint(path, *, map_location="cpu", trusted=False):
    """The raw dict of a checkpoint file, loaded with ``weights_only`` unless ``trusted``."""
    if os.path.isdir(path):
        _fail(path, "is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        _fail(path, f"cannot be loaded safely (weights_only=True): {_first_line(exc)}. "
                    "Pass trusted=True only if you trust where the file came from.")
    except Exception as exc:
        _fail(path, f"is not a readable PyTorch checkpoint (truncated or not a checkpoint?): "
                    f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc):
    # torch's load errors run to many lines of advice; a one-line message keeps the line with the
    # cause (the weights_only unpickler's own error when there is one), up to its first sentence
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("WeightsUnpickler error:")), lines[0] if lines else "")
    cause = cause.removeprefix("WeightsUnpickler error: ").split(". Please use")[0]
    return cause[:300] or type(exc).__name__


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
    from .models import get, make
    try:
        get(spec["name"])
    except KeyError as exc:
        _fail(path, exc.args[0])
    model = build_checked(path, lambda: make({"name": spec["name"], "args": spec["args"]}), spec["sd"],
                          spec["args"])
    if hasattr(model, "backend"):  # the fused modules (udvd, ...)
        model.backend = backend
    return model


def save_model(model, spec, path, **extra):
    """Save any model as ``{'model': {'name', 'args', 'sd'}}`` (``spec`` = the name and args it was
    built from), atomically."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic.save_torch({"model": {"name": spec["name"], "args": dict(spec.get("args") or {}), "sd": sd}, **extra},
                      path)


FLAGS = ("local_ensemble", "feat_unfold", "cell_decode")


def _encoder_spec(encoder):
    """The registry spec of an official EDSR / RDN encoder, from the ``args`` namespace it keeps."""
    a = getattr(encoder, "args", None)
    kind = type(encoder).__name__
    try:
        if getattr(a, "n_colors", 3) != 3:
            return None
        if kind == "EDSR":
            keys = ("n_resblocks", "n_feats", "res_scale")
            args = {k: getattr(a, k) for k in keys}
            name = "edsr-baseline"
        elif kind == "RDN":
            args = {k: getattr(a, k) for k in ("G0", "RDNkSize", "RDNconfig")}
            name = "rdn"
        else:
            return None
        scale = a.scale[0] if isinstance(a.scale, (list, tuple)) else a.scale
        args.update(scale=scale, no_upsampling=bool(a.no_upsampling))
        if kind == "EDSR":
            args["rgb_range"] = a.rgb_range
    except (AttributeError, IndexError, TypeError):
        return None
    return {"name": name, "args": args}


def liif_args(model):
    """The official ``args`` of a LIIF-structured module: its own ``encoder_spec`` / ``imnet_spec``
    when it keeps them (fastliif's classes), else derived from an official EDSR / RDN encoder's
    ``args`` and the decoder's Linear widths (the official LIIF class keeps no spec). None when
    they cannot be derived."""
    from .nn.liif import mlp_linears

    if not all(isinstance(getattr(model, f, None), bool) for f in FLAGS):
        return None
    if hasattr(model, "encoder_spec") and hasattr(model, "imnet_spec"):
        return {"encoder_spec": model.encoder_spec, "imnet_spec": model.imnet_spec,
                **{f: getattr(model, f) for f in FLAGS}}
    encoder_spec = _encoder_spec(getattr(model, "encoder", None))
    imnet = getattr(model, "imnet", None)
    if imnet is None:
        imnet_spec = None
    else:
        linears = mlp_linears(imnet)
        if linears is None or any(layer.bias is None for layer in linears):
            return None
        imnet_spec = {"name": "mlp", "args": {"out_dim": linears[-1].out_features,
                                              "hidden_list": [layer.out_features for layer in linears[:-1]]}}
    if encoder_spec is None:
        return None
    return {"encoder_spec": encoder_spec, "imnet_spec": imnet_spec, **{f: getattr(model, f) for f in FLAGS}}


def _fits(args, sd):
    """Whether the LIIF that ``args`` describe has exactly ``sd``'s keys and shapes."""
    try:
        expected = build_within(lambda: LIIF(**args), sd).state_dict()
    except (_OverBudget, KeyError, TypeError, ValueError):
        return False
    return set(expected) == set(sd) and all(tuple(sd[k].shape) == tuple(t.shape) for k, t in expected.items())


def save_checkpoint(model, path, spec=None, **extra):
    """Save a LIIF (fused, reference, or an instance of the official class) in the official
    format, loadable by both codebases, atomically.

    The model's args come from ``spec`` (``{'name': 'liif', 'args': {'encoder_spec': ...,
    'imnet_spec': ...}}``) when given, else from the model itself (see :func:`liif_args`). Either
    way they must rebuild exactly the model's state_dict keys and shapes.
    """
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if spec is not None:
        if not isinstance(spec, dict) or not isinstance(spec.get("args"), dict) or spec.get("name", "liif") != "liif":
            raise ValueError("save_checkpoint: spec must be {'name': 'liif', 'args': {'encoder_spec': ..., "
                             f"'imnet_spec': ...}}}}, got {spec!r}")
        args = {**{f: getattr(model, f) for f in FLAGS if isinstance(getattr(model, f, None), bool)}, **spec["args"]}
        if not _fits(args, sd):
            raise ValueError(f"save_checkpoint: the given spec does not rebuild this model's state_dict (keys or "
                             f"shapes differ): {spec['args']}")
    else:
        args = liif_args(model)
        if args is None or not _fits(args, sd):
            raise ValueError(f"save_checkpoint: cannot tell the encoder_spec / imnet_spec of this "
                             f"{type(model).__name__} (it keeps none, and its encoder is not an official EDSR/RDN "
                             f"with an MLP decoder that they could be read from); pass "
                             f"spec={{'name': 'liif', 'args': {{'encoder_spec': ..., 'imnet_spec': ...}}}}")
    atomic.save_torch({"model": {"name": "liif", "args": args, "sd": sd}, **extra}, path)
