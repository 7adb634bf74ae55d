"""`fastliif` command line: one subcommand per module in ``fastliif.commands``."""
import argparse
import sys

from .commands import register_all


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line naming the problem, exit code 2 (argparse's own code), without
    the usage block argparse prints first; `--help` still shows the usage. Subcommand parsers
    inherit this class (add_subparsers uses the parent's class)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="fastliif", description="fused LIIF / UDVD super-resolution")
    sub = parser.add_subparsers(dest="command", required=True)
    register_all(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
