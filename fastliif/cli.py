"""`fastliif` command line: one subcommand per module in ``fastliif.commands``."""
import argparse
import sys

from .commands import register_all


def build_parser():
    parser = argparse.ArgumentParser(prog="fastliif", description="fused LIIF / UDVD super-resolution")
    sub = parser.add_subparsers(dest="command", required=True)
    register_all(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
