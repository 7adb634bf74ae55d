"""`python -m fastliif.env`: versions and the backends this machine can run."""
import platform
import sys


def report():
    import torch

    import fastliif
    from fastliif import _ext
    from fastliif.ops import availability

    lines = [
        f"fastliif     {fastliif.__version__}",
        f"python       {sys.version.split()[0]} ({platform.machine()})",
        f"torch        {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})",
        f"threads      {torch.get_num_threads()}",
        f"CUDA device  {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
        f"triton       {_version('triton') if _ext.has_triton() else 'not installed'}",
        f"extension    {_ext.describe()}",
        "backends (liif_query):",
    ]
    for name, (ok, reason) in availability().items():
        lines.append(f"  {name:<7} {'yes' if ok else 'no ':<4} {reason}")
    return "\n".join(lines)


def _version(pkg):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    print(report())
