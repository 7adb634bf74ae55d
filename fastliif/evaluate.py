"""Evaluate an SR model on HR images at several scales: PSNR/SSIM of the model and of bicubic.

The protocol is the official LIIF test script's (``test.py`` + ``sr-implicit-downsampled``):
the HR image is cropped to ``round(h_lr * s) x round(w_lr * s)`` with
``h_lr = floor(H / s + 1e-9)`` (a multiple of ``s`` for integer scales), the LR image is that crop
resized down (or read from a paired LR folder), a LIIF model queries every HR pixel centre in one
call with ``cell = (2/H, 2/W)`` on inputs normalised ``(x - 0.5) / 0.5`` (its output mapped back
``* 0.5 + 0.5``, then clamped to [0, 1]), and :mod:`fastliif.metrics` scores it.

``evaluate`` is the library entry point (the README tables call it); ``fastliif eval`` wraps it.
"""
import inspect
import math
import os
import time

import torch

from . import metrics
from .atomic import save_figure
from .data.io import is_image_file, load_image, save_image
from .data.resize import resize as resize_image
from .reference.coord import make_cell, make_coord

RESIZE_METHODS = ("matlab", "pil", "torch")
# The official LIIF data_norm: inputs (x - 0.5) / 0.5, outputs * 0.5 + 0.5.
LIIF_DATA_NORM = {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}}

__all__ = ["evaluate", "format_table", "parse_scales", "load_images", "load_lr_images", "load_model_for_eval",
           "checkpoint_data_norm", "model_scale", "super_resolve", "downsample", "lr_shape", "RESIZE_METHODS"]


# ----------------------------------------------------------------------------- inputs

def parse_scales(text):
    """``"2,3,4.5"`` -> ``[2, 3, 4.5]`` (integral values as int); ValueError on anything else."""
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise ValueError(f"no scales given in {text!r}")
    scales = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"bad scale {item!r} in {text!r}: expected numbers like 2,3,4") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"bad scale {item!r} in {text!r}: scales must be positive")
        value = int(value) if value == int(value) else value
        if value in scales:
            raise ValueError(f"scale {item!r} repeated in {text!r}")
        scales.append(value)
    return scales


def _scale_text(scale):
    return str(int(scale)) if float(scale) == int(scale) else f"{scale:g}"


SAMPLES_PREFIX = "samples:"


def load_images(folder, limit=None):
    """``[(name, CxHxW float32 RGB in [0, 1]), ...]`` of a folder's images sorted by file name
    (``name`` = file name without extension). ``samples:chelsea,camera,...`` names photographs
    bundled with scikit-image / matplotlib instead (the ``sample-images`` dataset)."""
    from .data.folders import ImageFolder, SampleImages
    if folder.startswith(SAMPLES_PREFIX):
        names = [n for n in folder[len(SAMPLES_PREFIX):].split(",") if n]
        if limit is not None:
            names = names[:int(limit)]
        dataset = SampleImages(names)
        return [(n, dataset[i]) for i, n in enumerate(names)]
    dataset = ImageFolder(folder, first_k=limit)
    return [(os.path.splitext(os.path.basename(f))[0], dataset.load(i)) for i, f in enumerate(dataset.files)]


def _lr_folder(root, scale, n_scales):
    for sub in (f"X{_scale_text(scale)}", f"x{_scale_text(scale)}"):
        if os.path.isdir(os.path.join(root, sub)):
            return os.path.join(root, sub)
    if n_scales == 1:
        return root
    raise FileNotFoundError(f"LR folder {root} has no X{_scale_text(scale)} subfolder for scale {scale} "
                            "(with several scales each needs its own X<scale> folder)")


def load_lr_images(root, names, scales):
    """Paired LR images: ``{scale: [LR tensor per name]}``. Each scale reads ``root/X<scale>``
    (or ``root`` itself when only one scale is asked); ``name.png`` or ``name`` + ``x<scale>``
    (the benchmark naming, ``babyx2.png``) matches HR ``name``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"LR folder not found: {root}")
    out = {}
    for scale in scales:
        folder = _lr_folder(root, scale, len(scales))
        by_stem = {os.path.splitext(f)[0].lower(): f for f in os.listdir(folder) if is_image_file(f)}
        lrs = []
        for name in names:
            key = next((k for k in (name.lower(), f"{name}x{_scale_text(scale)}".lower()) if k in by_stem), None)
            if key is None:
                raise FileNotFoundError(f"no LR image for {name!r} at scale {scale} in {folder} "
                                        f"(looked for {name}.* and {name}x{_scale_text(scale)}.*)")
            lrs.append(load_image(os.path.join(folder, by_stem[key])))
        out[scale] = lrs
    return out


def _normalise_images(images):
    items = list(images.items()) if isinstance(images, dict) else list(images)
    if not items:
        raise ValueError("no images to evaluate")
    named = []
    for i, item in enumerate(items):
        name, img = item if isinstance(item, (tuple, list)) else (f"{i:04d}", item)
        if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
            got = getattr(img, "shape", type(img).__name__)
            raise ValueError(f"image {name!r}: expected a 3xHxW tensor, got {got}")
        if not img.is_floating_point():
            raise TypeError(f"image {name!r}: expected floating values in [0, 1], got {img.dtype}")
        named.append((str(name), img))
    return named


def lr_shape(hr_shape, scale):
    """LR size and HR crop size for an HR image of ``hr_shape`` at ``scale`` (the official rule)."""
    h, w = hr_shape
    h_lr, w_lr = math.floor(h / scale + 1e-9), math.floor(w / scale + 1e-9)
    if min(h_lr, w_lr) < 1:
        raise ValueError(f"a {h}x{w} image is too small for scale {scale}")
    return (h_lr, w_lr), (round(h_lr * scale), round(w_lr * scale))


def downsample(hr, scale, method="matlab"):
    """``(hr_crop, lr)``: HR cropped to the scale's grid and its resized-down LR image."""
    (h_lr, w_lr), (h, w) = lr_shape(hr.shape[-2:], scale)
    crop = hr[..., :h, :w]
    return crop, resize_image(crop, (h_lr, w_lr), method)


# ----------------------------------------------------------------------------- models

def _is_liif(model):
    return callable(getattr(model, "gen_feat", None)) and callable(getattr(model, "query_rgb", None))


def _encoder_scale(module):
    # Official EDSR / RDN keep their options in ``args`` (scale is a one-item list).
    args = getattr(module, "args", None)
    if args is None or getattr(args, "no_upsampling", True):
        return None
    scale = getattr(args, "scale", None)
    return int(scale[0] if isinstance(scale, (list, tuple)) else scale)


def model_scale(model):
    """The one scale a fixed-scale model produces, or None when it takes any scale (LIIF)."""
    if _is_liif(model):
        # A LIIF without imnet samples its (upsampling) encoder's output: that encoder's scale.
        return _encoder_scale(model.encoder) if getattr(model, "imnet", None) is None else None
    scale = getattr(model, "scale", None)
    if isinstance(scale, int) and not isinstance(scale, bool) and scale >= 1:
        return scale
    return _encoder_scale(model)


def _unsupported(model):
    """Why ``model`` cannot be evaluated LR -> SR, or None."""
    if _is_liif(model) or callable(getattr(model, "super_resolve", None)):
        return None
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    required = [p.name for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1:
        return f"{type(model).__name__}.forward needs {', '.join(required)}: not an LR -> SR model"
    return None


def _norm(model, data_norm):
    """(inp sub, inp div, gt sub, gt div) lists: ``data_norm``, else the model's ``data_norm``
    attribute, else the official LIIF one for LIIF models and none for the others."""
    if data_norm is None:
        data_norm = getattr(model, "data_norm", None)
    if data_norm is None:
        data_norm = LIIF_DATA_NORM if _is_liif(model) else {}

    def pair(key):
        spec = data_norm.get(key) or {}
        return [float(v) for v in spec.get("sub", [0.0])], [float(v) for v in spec.get("div", [1.0])]

    return (*pair("inp"), *pair("gt"))


@torch.no_grad()
def super_resolve(model, lr, out_size, data_norm=None):
    """SR of one LR image (3, h, w) in [0, 1] to ``out_size = (H, W)``, clamped to [0, 1].

    LIIF-style models (``gen_feat`` + ``query_rgb``) are called once on every HR pixel centre.
    Other models: ``model.super_resolve(lr[None])`` if they define it (inputs and outputs in
    [0, 1], no normalisation), else ``model(lr[None])``. Except for ``super_resolve``, inputs are
    normalised ``(x - inp.sub) / inp.div`` and outputs mapped back ``* gt.div + gt.sub`` with ``data_norm`` (the official config layout
    ``{'inp': {'sub', 'div'}, 'gt': {...}}``; missing parts mean 0 and 1); by default the
    model's ``data_norm`` attribute, else LIIF's ``(x - 0.5) / 0.5`` for LIIF models and
    nothing for the others (fastliif's fixed-scale models take and give [0, 1]).
    """
    h, w = out_size
    x = lr[None]
    if callable(getattr(model, "super_resolve", None)) and not _is_liif(model):
        out = model.super_resolve(x)
    else:
        in_sub, in_div, gt_sub, gt_div = _norm(model, data_norm)
        inp = (x - x.new_tensor(in_sub).view(1, -1, 1, 1)) / x.new_tensor(in_div).view(1, -1, 1, 1)
        if _is_liif(model):
            coord = make_coord((h, w)).to(x.device)[None]
            cell = make_cell(coord, (h, w))
            pred = model(inp, coord, cell)
            out = pred.view(1, h, w, -1).permute(0, 3, 1, 2)
        else:
            out = model(inp)
        out = out * out.new_tensor(gt_div).view(1, -1, 1, 1) + out.new_tensor(gt_sub).view(1, -1, 1, 1)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 3, h, w):
        raise ValueError(f"{type(model).__name__} returned {getattr(out, 'shape', type(out).__name__)} for a "
                         f"{tuple(lr.shape)} input; expected (1, 3, {h}, {w})")
    return out[0].clamp(0, 1)


def load_model_for_eval(path=None, backend="auto"):
    """A checkpoint's model (``path=None``: the bundled one) ready for ``evaluate``. LIIF loads as the fused module with
    ``backend``; ``backend='reference'`` gives the oracle ``fastliif.reference.liif.LIIF`` with
    the same weights. Other registered models load through ``fastliif.checkpoint.load_model``."""
    from . import checkpoint
    from .nn.liif import LIIF as FusedLIIF
    from .reference.liif import LIIF as ReferenceLIIF
    from .swap import unswap

    path = _checkpoint_path(path)
    fused_backend = "auto" if backend == "reference" else backend
    loader = getattr(checkpoint, "load_model", None)
    model = (loader or checkpoint.load_checkpoint)(path, backend=fused_backend)
    if backend == "reference":
        if isinstance(model, FusedLIIF):
            ref = ReferenceLIIF(model.encoder_spec, model.imnet_spec, model.local_ensemble,
                                model.feat_unfold, model.cell_decode)
            ref.load_state_dict(model.state_dict())
            model = ref
        else:
            unswap(model)  # fused submodules bound by swap() go back to their reference code
    return model.eval()


def _checkpoint_path(path):
    """``path``, or the bundled model's (PretrainedNotFoundError, naming --model, if missing)."""
    if path is not None:
        return path
    from .pretrained import DEFAULT_CHECKPOINT, PretrainedNotFoundError

    if not os.path.isfile(DEFAULT_CHECKPOINT):
        raise PretrainedNotFoundError(f"the bundled model {DEFAULT_CHECKPOINT} is not in this installation; "
                                      "pass a checkpoint with --model CKPT")
    return DEFAULT_CHECKPOINT


def checkpoint_data_norm(path=None):
    """The ``data_norm`` a fastliif-trained checkpoint (``path=None``: the bundled one) was trained
    with (``{}``: none), or None for checkpoints without fastliif's training config (official ones)."""
    from .checkpoint import read_checkpoint

    saved = read_checkpoint(_checkpoint_path(path))
    config = (saved.get("fastliif") or {}).get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict):
        return None
    return config.get("data_norm") or {}


# ----------------------------------------------------------------------------- evaluation

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean(values):
    return float(sum(values) / len(values))


def evaluate(model, images, scales, protocol="benchmark", *, resize="matlab", lr_images=None, device=None,
             save_dir=None, data_norm=None, progress=True):
    """PSNR/SSIM of ``model`` and of bicubic on HR ``images`` at each of ``scales``.

    images: HR tensors (3, H, W) in [0, 1], as a list, a list of ``(name, tensor)`` or a dict.
    protocol: ``'benchmark'``, ``'div2k'`` or None (see :mod:`fastliif.metrics`).
    resize: how LR images are made from the HR crop and how the bicubic baseline upscales them
    (``'matlab'``, ``'pil'``, ``'torch'``; see :func:`fastliif.data.resize.resize`).
    lr_images: optional ``{scale: [LR tensor per image]}`` paired LR images (HR is then cropped
    to ``round(lr size * scale)``). device: where the model runs (default: its parameters').
    save_dir: writes the SR images as ``save_dir/x<scale>/<name>.png``. data_norm: the model's
    input/output normalisation (see :func:`super_resolve`; default by model kind).

    Returns ``{'protocol', 'resize', 'model', 'scales': [row, ...], 'skipped': [{'scale', 'reason'}]}``
    with rows ``{'scale', 'images', 'psnr', 'ssim', 'bicubic_psnr', 'bicubic_ssim',
    's_per_image', 'per_image': [{'name', 'psnr', 'ssim', 'bicubic_psnr', 'bicubic_ssim', 's'}]}``;
    each mean is over the images, as the official script averages per-image PSNRs.
    """
    from tqdm import tqdm

    named = _normalise_images(images)
    if protocol not in metrics.PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {metrics.PROTOCOLS}")
    if resize not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {resize!r}; choose from {RESIZE_METHODS}")
    scales = list(scales)
    if not scales:
        raise ValueError("no scales to evaluate")
    for s in scales:
        metrics.shave_for("benchmark", s)  # validates the scale
    if lr_images is not None:
        for s in scales:
            if s not in lr_images or len(lr_images[s]) != len(named):
                raise ValueError(f"lr_images must hold {len(named)} LR images for scale {s}")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    model = model.to(device).eval()

    fixed, why_not = model_scale(model), _unsupported(model)
    result = {"protocol": protocol, "resize": resize, "model": type(model).__name__, "scales": [], "skipped": []}
    todo = []
    for s in scales:
        if why_not is not None:
            result["skipped"].append({"scale": s, "reason": why_not})
        elif fixed is not None and float(s) != fixed:
            result["skipped"].append({"scale": s, "reason": f"fixed-scale model (x{fixed})"})
        else:
            todo.append(s)

    bar = tqdm(total=len(todo) * len(named), desc="eval", leave=False, disable=not progress)
    for s in todo:
        rows = []
        for i, (name, hr) in enumerate(named):
            bar.set_postfix_str(f"x{_scale_text(s)} {name}")
            hr = hr.to(device)
            if lr_images is None:
                hr, lr = downsample(hr, s, resize)
            else:
                lr = lr_images[s][i].to(device)
                h, w = round(lr.shape[-2] * s), round(lr.shape[-1] * s)
                if h > hr.shape[-2] or w > hr.shape[-1]:
                    raise ValueError(f"{name}: LR {tuple(lr.shape[-2:])} x{s} exceeds HR {tuple(hr.shape[-2:])}")
                hr = hr[:, :h, :w]
            size = tuple(hr.shape[-2:])
            _sync(device)
            t0 = time.perf_counter()
            sr = super_resolve(model, lr, size, data_norm)
            _sync(device)
            seconds = time.perf_counter() - t0
            bicubic = resize_image(lr, size, resize).clamp(0, 1)
            try:
                pair, base = (sr[None], hr[None]), (bicubic[None], hr[None])
                row = {"name": name,
                       "psnr": float(metrics.psnr(*pair, protocol=protocol, scale=s)[0]),
                       "ssim": float(metrics.ssim(*pair, protocol=protocol, scale=s)[0]),
                       "bicubic_psnr": float(metrics.psnr(*base, protocol=protocol, scale=s)[0]),
                       "bicubic_ssim": float(metrics.ssim(*base, protocol=protocol, scale=s)[0]),
                       "s": seconds}
            except ValueError as exc:
                raise ValueError(f"{name} at scale {s}: {exc}") from None
            rows.append(row)
            if save_dir is not None:
                save_image(sr.cpu(), os.path.join(save_dir, f"x{_scale_text(s)}", f"{name}.png"))
            bar.update(1)
        result["scales"].append({
            "scale": s, "images": len(rows),
            **{k: _mean([r[k] for r in rows]) for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")},
            "s_per_image": _mean([r["s"] for r in rows]), "per_image": rows})
    bar.close()
    return result


def format_table(result):
    """Markdown table of an ``evaluate`` result, one row per evaluated scale, then skipped scales."""
    lines = ["| scale | images | PSNR | SSIM | bicubic PSNR | bicubic SSIM | s/image |",
             "|---|---|---|---|---|---|---|"]
    for r in result["scales"]:
        lines.append(f"| {_scale_text(r['scale'])} | {r['images']} | {r['psnr']:.4f} | {r['ssim']:.4f} | "
                     f"{r['bicubic_psnr']:.4f} | {r['bicubic_ssim']:.4f} | {r['s_per_image']:.4f} |")
    for sk in result["skipped"]:
        lines.append(f"x{_scale_text(sk['scale'])} skipped: {sk['reason']}")
    return "\n".join(lines)


def plot_result(result, path):
    """PSNR per scale, model vs bicubic (mean line, one dot per image), saved as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["scales"]
    if not rows:
        raise ValueError("nothing to plot: no scale was evaluated")
    scales = [r["scale"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, label, color in (("psnr", result.get("model", "model"), "C0"), ("bicubic_psnr", "bicubic", "C7")):
        ax.plot(scales, [r[key] for r in rows], marker="o", color=color, label=label)
        for r in rows:
            ax.scatter([r["scale"]] * len(r["per_image"]), [p[key] for p in r["per_image"]], s=8, color=color,
                       alpha=0.4)
    ax.set(xlabel="scale", ylabel=f"PSNR (dB, {result.get('protocol', '')})", xticks=scales)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
