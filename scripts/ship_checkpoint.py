"""Copy a training checkpoint into the package as the bundled model: the official LIIF format
({'model': {'name', 'args', 'sd'}}) plus provenance (epoch, config, history), without the
optimizer state.

    python scripts/ship_checkpoint.py /work/save/liif-photos/epoch-last.pth fastliif/assets/liif-edsr-baseline.pth --fp16

``--fp16`` stores the weights in half precision (half the file) only if the model loaded from
the shipped file (fp32 compute, as every loader does: ``load_state_dict`` casts) gives the same
outputs as the fp32 weights to 1e-3 on [0, 1] images, checked on random inputs at x2, x3.5 and x4;
otherwise it refuses and names the difference. Bad input is one line on stderr, exit 2.
"""
import argparse
import os
import sys

import torch

from fastliif.atomic import save_torch
from fastliif.checkpoint import load_checkpoint, read_checkpoint
from fastliif.reference.coord import make_cell, make_coord

FP16_TOLERANCE = 1e-3


def half_state_dict(sd):
    return {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}


@torch.no_grad()
def max_output_difference(path_a, path_b, seed=0):
    """Largest |a - b| of two LIIF checkpoints' outputs in [0, 1] units (the official data_norm:
    inputs (x - 0.5) / 0.5, outputs * 0.5 + 0.5) on random images at several scales."""
    a, b = load_checkpoint(path_a).eval(), load_checkpoint(path_b).eval()
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for (h, w), scale in (((24, 31), 2), ((17, 20), 3.5), ((32, 32), 4)):
        # smooth random field plus fine noise: photograph-like values over the whole [0, 1] range
        x = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4 + 2, w // 4 + 2, generator=gen), (h, w),
                                            mode="bicubic", align_corners=False)
        x = (x + 0.05 * torch.randn(1, 3, h, w, generator=gen)).clamp(0, 1)
        size = (round(h * scale), round(w * scale))
        coord = make_coord(size)[None]
        cell = make_cell(coord, size)
        inp = (x - 0.5) / 0.5
        ya, yb = (m(inp, coord, cell) * 0.5 + 0.5 for m in (a, b))
        worst = max(worst, float((ya - yb).abs().max()))
    return worst


def earlier_stages(config):
    """The runs a fine-tune started from (``init_from``, followed back), oldest last: each one's
    checkpoint path, epoch, config and history, so the shipped file says how it was made. A
    checkpoint no longer on disk is named with ``"missing": true``."""
    stages = []
    while isinstance(config, dict) and config.get("init_from") and len(stages) < 8:
        path = config["init_from"]
        try:
            saved = read_checkpoint(path)
        except (OSError, ValueError):
            stages.append({"checkpoint": path, "missing": True})
            break
        extra = saved.get("fastliif") or {}
        config = extra.get("config")
        stages.append({"checkpoint": path, "epoch": saved.get("epoch"), "config": config,
                       "history": extra.get("history")})
    return stages


def ship(src, dst, fp16=False, log=print):
    saved = read_checkpoint(src)
    if not isinstance(saved.get("model"), dict) or "sd" not in saved["model"]:
        raise ValueError(f"{src}: not an official-format LIIF checkpoint")
    extra = saved.get("fastliif") or {}
    blob = {"model": saved["model"], "epoch": saved.get("epoch"),
            "fastliif": {"config": extra.get("config"), "history": extra.get("history"),
                         "source": os.path.basename(src), "storage": "float32",
                         "earlier_stages": earlier_stages(extra.get("config"))}}
    n = sum(v.numel() for v in saved["model"]["sd"].values())
    if not fp16:
        save_torch(blob, dst)
        load_checkpoint(dst)  # it must load as the fused model
        log(f"wrote {dst}: {saved['model']['name']}, epoch {saved.get('epoch')}, {n:,} values, float32")
        return 0.0
    half = {**blob, "model": {**saved["model"], "sd": half_state_dict(saved["model"]["sd"])},
            "fastliif": {**blob["fastliif"], "storage": "float16 (fp32 compute; outputs within "
                                                        f"{FP16_TOLERANCE:g} of the fp32 weights)"}}
    tmp = dst + ".fp16-check"
    fp32_tmp = dst + ".fp32-check"
    try:
        save_torch(half, tmp)
        save_torch(blob, fp32_tmp)
        diff = max_output_difference(fp32_tmp, tmp)
        if diff > FP16_TOLERANCE:
            raise ValueError(f"float16 weights change the outputs by {diff:.2e} > {FP16_TOLERANCE:g}: "
                             "ship without --fp16")
        half["fastliif"]["fp16_max_output_difference"] = diff
        save_torch(half, dst)
    finally:
        for p in (tmp, fp32_tmp):
            if os.path.exists(p):
                os.unlink(p)
    load_checkpoint(dst)
    log(f"wrote {dst}: {saved['model']['name']}, epoch {saved.get('epoch')}, {n:,} values, float16 "
        f"(outputs within {diff:.1e} of float32)")
    return diff


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="training checkpoint (epoch-last.pth / epoch-best.pth)")
    p.add_argument("dst", help="where to write the bundled model")
    p.add_argument("--fp16", action="store_true", help="store float16 weights if outputs stay within 1e-3")
    args = p.parse_args(argv)
    try:
        ship(args.src, args.dst, args.fp16)
    except (ValueError, OSError) as exc:
        print(f"ship_checkpoint: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
