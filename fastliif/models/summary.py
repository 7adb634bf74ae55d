"""Parameter counts of registered models: ``count_parameters`` and ``describe``."""
import inspect

from . import get, make


def count_parameters(model, trainable_only=False):
    """Number of scalars in ``model.parameters()`` (only those with requires_grad if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _signature(name):
    return inspect.signature(get(name)).parameters.values()


def required_args(name):
    """Constructor arguments of registered model ``name`` that have no default."""
    return [p.name for p in _signature(name)
            if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def accepts(name, arg):
    """Whether registered model ``name``'s constructor takes keyword ``arg``."""
    params = list(_signature(name))
    return (any(p.name == arg for p in params)
            or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params))


def _label(spec):
    args = spec.get("args") or {}
    if not args:
        return spec["name"]
    return f"{spec['name']}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def describe(name_or_spec):
    """``'a2n: 1,047,459 parameters'`` for a registered name or a {'name', 'args'} spec."""
    spec = {"name": name_or_spec, "args": {}} if isinstance(name_or_spec, str) else name_or_spec
    if not isinstance(spec, dict) or "name" not in spec:
        raise TypeError(f"describe() takes a model name or a dict with 'name' (and 'args'), got {name_or_spec!r}")
    return f"{_label(spec)}: {count_parameters(make(spec)):,} parameters"
