"""One module per `fastliif` subcommand; each defines ``register(subparsers)`` which adds its parser
and sets ``func`` (called with the parsed args, returns the exit code)."""
import importlib
import pkgutil


def register_all(subparsers):
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
