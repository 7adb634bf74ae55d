"""`fastliif models`: every registered model with its parameter count at default arguments."""


def register(sub):
    p = sub.add_parser("models", help="list registered models and their parameter counts")
    p.add_argument("names", nargs="*", help="models to describe (default: all registered)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument for the named models, value parsed as YAML (e.g. scale=2); repeatable")
    p.set_defaults(func=run)


def _parse_args(pairs):
    import yaml
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg must look like KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def run(args):
    import sys

    from .. import models
    from ..models.summary import accepts, describe, required_args

    try:
        extra = _parse_args(args.arg)
    except ValueError as e:
        print(f"fastliif models: {e}", file=sys.stderr)
        return 2
    names = args.names or models.names()
    unknown = [n for n in names if n not in models.names()]
    if unknown:
        print(f"fastliif models: unknown model(s) {', '.join(unknown)}; registered: {', '.join(models.names())}",
              file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        missing = [a for a in required_args(name) if a not in extra]
        if missing:
            print(f"{name}: skipped, needs arguments ({', '.join(missing)})")
            continue
        foreign = [k for k in extra if not accepts(name, k)]
        if foreign:
            print(f"{name}: skipped, takes no argument {', '.join(foreign)}")
            continue
        try:
            print(describe({"name": name, "args": extra}))
        except Exception as e:  # a model that cannot be built with these args: report, keep going
            print(f"{name}: cannot be built with {extra or 'default arguments'}: {type(e).__name__}: {e}")
            failed += 1
    return 1 if failed else 0
