"""`fastliif env`: versions and available backends."""


def register(sub):
    p = sub.add_parser("env", help="versions and available backends")
    p.set_defaults(func=run)


def run(args):
    from ..env import report
    print(report())
    return 0
