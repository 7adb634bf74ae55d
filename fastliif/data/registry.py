"""Dataset registry by name, as the official LIIF ``datasets.make(spec, args)``.

A spec is ``{'name': ..., 'args': {...}}``. Wrappers (e.g. ``sr-implicit-downsampled``) take the
dataset they wrap as their first argument: ``make(wrapper_spec, args={'dataset': inner})``.
"""
from .._registry import Registry, import_submodules


def _populate():
    # every module of fastliif.data registers its datasets on import
    from .. import data
    import_submodules(data)


_datasets = Registry("dataset", _populate)
register, names, make, check = _datasets.register, _datasets.names, _datasets.make, _datasets.check
