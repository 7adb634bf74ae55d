"""Model registry by name, as the official LIIF `models.make(spec)`.

A spec is ``{'name': ..., 'args': {...}}`` (or just a name). Registered here:
``edsr-baseline``, ``edsr``, ``rdn``, ``mlp`` (plain PyTorch modules shared by the
reference and the fused models), ``liif`` (fused) and ``liif-reference`` (the oracle).
"""
import copy

_REGISTRY = {}


def register(name):
    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise KeyError(f"model name {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls
    return decorator


def _populate():
    # Importing these modules runs their @register decorators: the oracle, the fused modules and
    # every module of this package (a2n, srcnn, srgan, ...).
    import importlib
    import pkgutil

    from .. import reference, nn  # noqa: F401
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def names():
    _populate()
    return sorted(_REGISTRY)


def make(spec, args=None):
    """Build a model from a spec dict (name + args) or a registered name."""
    _populate()
    if isinstance(spec, str):
        spec = {"name": spec, "args": {}}
    if not isinstance(spec, dict) or "name" not in spec:
        raise TypeError(f"model spec must be a name or a dict with 'name' (and 'args'), got {spec!r}")
    name = spec["name"]
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    kwargs = copy.deepcopy(spec.get("args") or {})
    kwargs.update(args or {})
    return _REGISTRY[name](**kwargs)
