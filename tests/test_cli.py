"""The `fastliif` command line (small sizes: the default sizes are the README's main job)."""
import subprocess
import sys

import pytest

from fastliif.cli import build_parser, main


def test_compare_small_passes_and_prints_table(capsys):
    code = main(["compare", "--size", "6", "--scale", "2.5", "--batch", "2", "--sample-q", "40", "--rounds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "inference x2.5 6x6 -> 15x15" in out and "fwd+bwd B=2 sample_q=40" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "impl" not in line]
    assert len(rows) >= 4 and all("NO" not in r for r in rows)


def test_compare_rejects_bad_sizes():
    proc = subprocess.run([sys.executable, "-m", "fastliif", "compare", "--size", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--size must be >= 1" in proc.stderr


def test_env_subcommand(capsys):
    assert main(["env"]) == 0
    assert "backends (liif_query)" in capsys.readouterr().out


def test_argument_errors_are_one_line_exit_2_for_every_subcommand(capsys):
    """argparse's errors (missing or malformed arguments, unknown subcommands) are one line naming
    the problem, without the usage block, for the top level and every subcommand."""
    commands = sorted(build_parser()._subparsers._group_actions[0].choices)
    assert {"upscale", "eval", "train", "bench", "prepare-patches"} <= set(commands)
    for argv in [["bogus"], *[[c, "--no-such-flag"] for c in commands]]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2, argv
        assert len(err.strip().splitlines()) == 1 and "error:" in err and "usage:" not in err, (argv, err)
