"""Registries by name, as the official LIIF ``models.make`` / ``datasets.make``: one mechanism for
models and datasets. A spec is ``{'name': ..., 'args': {...}}`` or just a name; ``args`` given to
``make`` override / add keyword arguments. Unknown names and misspelled keyword arguments are
one-line errors naming the nearest valid choice."""
import copy
import difflib
import inspect


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered (a KeyError as before, and a ValueError for the CLIs)."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


class BadArgumentError(TypeError, ValueError):
    """A keyword argument the constructor does not take."""


def did_you_mean(word, choices):
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def keyword_names(factory):
    """The keyword arguments ``factory`` accepts, or None when it takes ``**kwargs`` (or cannot be inspected)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def check_kwargs(factory, kwargs, what):
    """Raise BadArgumentError for the first key of ``kwargs`` that ``factory`` does not take."""
    valid = keyword_names(factory)
    if valid is None:
        return
    for key in kwargs:
        if key not in valid:
            raise BadArgumentError(f"{what} has no argument {key!r}{did_you_mean(key, valid)} "
                                   f"(it takes: {', '.join(valid) or 'none'})")


class Registry:
    def __init__(self, kind, populate):
        self.kind = kind
        self._populate = populate  # imports the modules whose @register decorators fill the table
        self._table = {}

    def register(self, name):
        def decorator(cls):
            if name in self._table and self._table[name] is not cls:
                raise KeyError(f"{self.kind} name {name!r} is already registered")
            self._table[name] = cls
            return cls
        return decorator

    def names(self):
        self._populate()
        return sorted(self._table)

    def get(self, name):
        """The registered class (or factory) for ``name``."""
        self._populate()
        if not isinstance(name, str) or name not in self._table:
            raise UnknownNameError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._table)}; "
                                   f"registered: {', '.join(sorted(self._table))}")
        return self._table[name]

    def check(self, spec, args=None, where=None):
        """The factory and keyword arguments of ``spec`` (plus ``args``), after checking the name
        is registered and every argument is one the factory takes."""
        if isinstance(spec, str):
            spec = {"name": spec, "args": {}}
        if not isinstance(spec, dict) or "name" not in spec:
            raise TypeError(f"{self.kind} spec must be a name or a dict with 'name' (and 'args'), got {spec!r}")
        if not isinstance(spec.get("args") or {}, dict):
            raise BadArgumentError(f"{where or self.kind + ' ' + repr(spec['name'])}: args must be a mapping, "
                                   f"got {spec['args']!r}")
        factory = self.get(spec["name"])
        kwargs = copy.deepcopy(spec.get("args") or {})
        kwargs.update(args or {})
        check_kwargs(factory, kwargs, where or f"{self.kind} {spec['name']!r}")
        return factory, kwargs

    def make(self, spec, args=None):
        factory, kwargs = self.check(spec, args)
        return factory(**kwargs)


def import_submodules(package):
    """Import every public module of ``package`` (runs their @register decorators)."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
