"""Dataset registry by name, as the official LIIF ``datasets.make(spec, args)``.

A spec is ``{'name': ..., 'args': {...}}``. Wrappers (e.g. ``sr-implicit-downsampled``) take the
dataset they wrap as their first argument: ``make(wrapper_spec, args={'dataset': inner})``.
"""
import copy
import importlib
import pkgutil

_REGISTRY = {}


def register(name):
    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise KeyError(f"dataset name {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls
    return decorator


def _populate():
    # Every module of fastliif.data registers its datasets on import.
    from .. import data
    for info in pkgutil.iter_modules(data.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{data.__name__}.{info.name}")


def names():
    _populate()
    return sorted(_REGISTRY)


def make(spec, args=None):
    """Build a dataset from ``{'name', 'args'}``; ``args`` overrides / adds keyword arguments."""
    _populate()
    if isinstance(spec, str):
        spec = {"name": spec, "args": {}}
    if not isinstance(spec, dict) or "name" not in spec:
        raise TypeError(f"dataset spec must be a name or a dict with 'name' (and 'args'), got {spec!r}")
    if spec["name"] not in _REGISTRY:
        raise KeyError(f"unknown dataset {spec['name']!r}; registered: {', '.join(names())}")
    kwargs = copy.deepcopy(spec.get("args") or {})
    kwargs.update(args or {})
    return _REGISTRY[spec["name"]](**kwargs)
