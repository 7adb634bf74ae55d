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
    lines.append("backends (dynamic_conv):")
    for name, (ok, reason) in availability("dynamic_conv").items():
        lines.append(f"  {name:<7} {'yes' if ok else 'no ':<4} {reason}")
    lines += auto_choices()
    return "\n".join(lines)


def auto_choices():
    """What backend="auto" runs, per op and device, in float32 (the rule: fastliif.ops._backends)."""
    import torch

    from fastliif.ops import _backends
    from fastliif.ops.liif_query import _rejects

    try:
        forced = _backends.env_backend()
    except ValueError as exc:
        return [f"auto choice: {exc}"]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    order = "cuda before triton" if _backends.CUDA_FIRST else "triton before cuda (no GPU has measured cuda yet)"
    lines = [f"auto choice ({_backends.ENV_VAR}={forced}; on CUDA {order}):"]
    meta = dict(device="meta", dtype=torch.float32)
    liif = [torch.empty(256, 580, **meta)] + [torch.empty(256, 256, **meta)] * 3 + [torch.empty(3, 256, **meta)]
    odd = [torch.empty(200, 580, **meta), torch.empty(200, 200, **meta), torch.empty(3, 200, **meta)]
    cases = [("liif_query", "LIIF decoder 256x4, training", _rejects(liif, True)),
             ("liif_query", "decoder of width 200", _rejects(odd, False)),
             ("dynamic_conv", "", None)]
    for device in devices:
        for op, what, rejects in cases:
            try:
                name, why = _backends.choose("auto", device, torch.float32, op, rejects)
            except (RuntimeError, TypeError, ValueError) as exc:
                name, why = "error", str(exc)
            label = f"{op} {device.type} float32" + (f", {what}" if what else "")
            lines.append(f"  {label:<54} -> {name:<7} ({why})")
    return lines


def _version(pkg):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    print(report())
