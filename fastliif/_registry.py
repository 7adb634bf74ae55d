"""Registries by name, as the official LIIF ``models.make`` / ``datasets.make``: one mechanism for
models and datasets. A spec is ``{'name': ..., 'args': {...}}`` or just a name; ``args`` given to
``make`` override / add keyword arguments."""
import copy


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
        if name not in self._table:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._table))}")
        return self._table[name]

    def make(self, spec, args=None):
        if isinstance(spec, str):
            spec = {"name": spec, "args": {}}
        if not isinstance(spec, dict) or "name" not in spec:
            raise TypeError(f"{self.kind} spec must be a name or a dict with 'name' (and 'args'), got {spec!r}")
        factory = self.get(spec["name"])
        kwargs = copy.deepcopy(spec.get("args") or {})
        kwargs.update(args or {})
        return factory(**kwargs)


def import_submodules(package):
    """Import every public module of ``package`` (runs their @register decorators)."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
