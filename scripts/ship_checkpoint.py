"""Copy a training checkpoint into the package as the bundled model: the official LIIF format
({'model': {'name', 'args', 'sd'}}) plus provenance (epoch, config, history), without the
optimizer state.

    python scripts/ship_checkpoint.py save/liif-bundled/epoch-last.pth fastliif/assets/liif-edsr-small.pth
"""
import argparse

from fastliif.atomic import save_torch
from fastliif.checkpoint import load_checkpoint, read_checkpoint


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    args = p.parse_args()
    saved = read_checkpoint(args.src)
    extra = saved.get("fastliif") or {}
    blob = {"model": saved["model"], "epoch": saved.get("epoch"),
            "fastliif": {"config": extra.get("config"), "history": extra.get("history"), "source": args.src}}
    save_torch(blob, args.dst)
    load_checkpoint(args.dst)  # it must load as the fused model
    n = sum(v.numel() for v in saved["model"]["sd"].values())
    print(f"wrote {args.dst}: {saved['model']['name']}, epoch {saved.get('epoch')}, {n:,} values")


if __name__ == "__main__":
    main()
