"""Upscale images with a LIIF model: any scale >= 1 (non-integer too), any output size.

    from fastliif.upscale import upscale_file, upscale_tensor
    upscale_file("in.png", "out.png", scale=3.5)                 # bundled model, CPU
    upscale_file("in.jpg", "out.png", size=(720, 1280))          # (height, width), anisotropic
    sr = upscale_tensor(model, x, (H, W))                        # x: float CxHxW in [0, 1]

The model sees exactly what the official LIIF demo feeds it: the image normalised with
``(x - 0.5) / 0.5``, the coordinates of every output pixel centre (``make_coord``) and the
cell ``(2/H, 2/W)``; the prediction is mapped back with ``* 0.5 + 0.5`` and clamped to [0, 1].
Grayscale images run as RGB (the gray plane replicated) and are written back as gray
(ITU-R 601 luma, as Pillow's ``convert('L')``); an alpha plane is upscaled with bicubic
interpolation (``F.interpolate``'s, ``align_corners=False``, evaluated band by band through
``grid_sample``) and kept.

Any size: the encoder runs on LR tiles extended by its receptive field (fastliif.tiling), so
the features equal the whole image's to fp32 rounding; a fused LIIF keeps only its first
layer's projection of them (N1 floats per LR pixel), any other model the features. The
queries then run in row bands over the whole image's coordinates (at most ``QUERY_CHUNK`` per
fused call, ``REFERENCE_CHUNK`` per reference call as the official ``batched_predict``) and go
straight into the 8-bit output image. Memory: that image (and Pillow's copy while it is
encoded), the projected map, one tile's activations and one call's queries. Encoders whose
receptive field cannot be bounded run once on the whole image. ``slices=N`` (CLI
``--slices N``) asks for at least N row bands (same pixels).
"""
import contextlib
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from .data.io import open_image, output_format, pil_to_tensor, write_image
from .reference.coord import make_cell, make_coord

PRECISIONS = ("ieee", "tf32", "bf16", "fp16")
BACKENDS = ("auto", "cpu", "torch", "triton", "reference")
PROGRESS_PIXELS = 1 << 20  # outputs above ~1 MP (seconds on a CPU) get a progress bar
REFERENCE_CHUNK = 30000  # queries per reference call: the official test-time batched_predict bsize
QUERY_CHUNK = 1 << 20  # queries per fused call: bounds its per-query buffers (coord, cell, corners, output)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, Pillow's RGB -> L
OVERHEAD_BYTES = 256 << 20  # libraries, thread scratch, the torch backend's chunk buffers


class UpscaleError(ValueError):
    """A request that cannot be carried out (bad size, too large, unsupported file, ...)."""


# ----------------------------------------------------------------------------------------- sizes

def parse_size(text):
    """``"WxH"`` (as image viewers write it) -> (height, width)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", str(text))
    if not m:
        raise UpscaleError(f"--size must be WIDTHxHEIGHT such as 1920x1080, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 1 or h < 1:
        raise UpscaleError(f"--size must be at least 1x1, got {w}x{h}")
    return h, w


def output_size(in_hw, scale=None, size=None):
    """Output (height, width) from a scale (>= 1, finite) or a (height, width) size (>= the input)."""
    h, w = in_hw
    if (scale is None) == (size is None):
        raise UpscaleError("give exactly one of scale and size")
    if scale is not None:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise UpscaleError(f"--scale must be a number, got {scale!r}") from None
        if not math.isfinite(scale):
            raise UpscaleError(f"--scale must be a finite number, got {scale}")
        if scale <= 0:
            raise UpscaleError(f"--scale must be positive, got {scale:g}")
        if scale < 1:
            raise UpscaleError(f"--scale must be >= 1 (LIIF upscales; to shrink, resize instead), got {scale:g}")
        return max(1, round(h * scale)), max(1, round(w * scale))
    H, W = (int(s) for s in size)
    if H < 1 or W < 1:
        raise UpscaleError(f"--size must be at least 1x1, got {W}x{H}")
    if H < h or W < w:
        raise UpscaleError(f"--size {W}x{H} is smaller than the input {w}x{h}: LIIF upscales, each side must be "
                           "at least the input's")
    return H, W


# ---------------------------------------------------------------------------------------- memory

def available_memory(device):
    """Bytes that can still be allocated on ``device``: free GPU memory, or the host's available RAM
    (psutil if installed, else /proc/meminfo MemAvailable, else sysconf), capped by a cgroup limit."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    avail = None
    try:
        import psutil
        avail = psutil.virtual_memory().available
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration, ValueError):
            try:
                avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                return None
    try:  # cgroup v2 limit (containers)
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                avail = min(avail, int(limit) - int(f.read()))
    except (OSError, ValueError):
        pass
    return avail


def _widths(model):
    from .nn.liif import mlp_linears

    linears = mlp_linears(model.imnet) if getattr(model, "imnet", None) is not None else None
    return [layer.out_features for layer in linears] if linears else [256]


def _encoder_channels(model):
    """The widest tensor a conv of the encoder reads (RDN's dense blocks concatenate)."""
    encoder = getattr(model, "encoder", None)
    convs = [m.in_channels for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)] if encoder else []
    return max(convs + [getattr(encoder, "out_dim", 64)])


def estimate_memory(model, in_hw, out_hw, channels):
    """(host bytes, device bytes) an upscale needs, conservatively; device bytes are 0 on CPU runs
    (add them to the host figure).

    Host: the 8-bit output and Pillow's copy of it (4 bytes a pixel but for gray) while it is
    encoded, and the input. Device: the normalised input; the encoder's activations over one
    tile (tiled) or the whole image (encoders that cannot be tiled); the whole-image map the
    queries read (the fused LIIF's projected features, N1 floats a cell, or the features); and
    one call's queries.
    """
    from .tiling import core_size

    h, w = in_hw
    H, W = out_hw
    f32 = 4
    widths = _widths(model)
    feats = getattr(getattr(model, "encoder", None), "out_dim", 64)
    radius = tile_radius(model)
    if radius is None:
        th, tw = h, w
    else:
        side = core_size(radius) + 2 + 2 * radius
        th, tw = min(h, side), min(w, side)
    activations = th * tw * f32 * 4 * _encoder_channels(model)  # a few live tensors of the widest layer
    if is_fused(model):
        whole = h * w * f32 * widths[0]
        per_query = (2 + 2 + 3) * f32 + 128  # coord, cell, prediction, corner geometry (torch / triton)
    else:
        whole = h * w * f32 * feats
        per_query = (2 + 2 + 3) * f32 + f32 * (3 * (9 * feats + 4) + 3 * max(widths))
    device = 3 * h * w * f32 + activations + whole + min(queries_per_call(model), H * W) * per_query
    host = H * W * (channels + (1 if channels == 1 else 4)) + h * w * f32 * (channels + 1)
    return host, device


def check_memory(model, in_hw, out_hw, channels, device):
    """UpscaleError when the estimate (estimate_memory) passes the memory available."""
    host, dev = estimate_memory(model, in_hw, out_hw, channels)
    device = torch.device(device)
    needs = [("RAM", host + (dev if device.type == "cpu" else 0), torch.device("cpu"))]
    if device.type != "cpu":
        needs.append((f"{device.type} memory", dev, device))
    for what, need, where in needs:
        avail = available_memory(where)
        if avail is not None and need + OVERHEAD_BYTES > avail:
            H, W = out_hw
            raise UpscaleError(f"a {W}x{H} output needs about {_gib(need + OVERHEAD_BYTES)} of {what} but only "
                               f"{_gib(avail)} is available: choose a smaller --scale or --size")


def _gib(n):
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 2**20:.3g} MiB"


# ------------------------------------------------------------------------------------- precision

def check_precision(precision, device):
    if precision is not None and precision not in PRECISIONS:
        raise UpscaleError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision not in (None, "ieee") and torch.device(device).type != "cuda":
        raise UpscaleError(f"--precision {precision} needs a CUDA device (--device cuda); "
                           "the CPU kernels compute in IEEE fp32")


@contextlib.contextmanager
def precision_mode(precision, device):
    """Run the encoder and the query in ``precision`` ("ieee" | "tf32" | "bf16" | "fp16"; None =
    PyTorch's current settings). Reduced precisions are GPU-only: the CPU kernels are IEEE fp32."""
    device = torch.device(device)
    check_precision(precision, device)
    if precision is None or device.type != "cuda":
        yield
        return
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    try:
        tf32 = precision == "tf32"
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        torch.backends.cudnn.allow_tf32 = tf32
        if precision in ("bf16", "fp16"):
            with torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16):
                yield
        else:
            yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


# ------------------------------------------------------------------------------------ the model

def is_fused(model):
    from .nn.liif import LIIF
    return isinstance(model, LIIF)


def queries_per_call(model):
    """Queries per call: QUERY_CHUNK for the fused op (bounds its per-query buffers), the official
    batched_predict's REFERENCE_CHUNK for any other query_rgb (its memory grows per query)."""
    return QUERY_CHUNK if is_fused(model) else REFERENCE_CHUNK


def rows_per_call(model, out_hw, slices=None, width=None):
    """Output rows per query call over ``width`` columns (default the output's): as many as
    queries_per_call allows, and at most ceil(H / slices) when ``slices`` asks for that many
    row bands at least."""
    H, W = out_hw
    width = W if width is None else width
    rows = H
    if slices is not None:
        if int(slices) < 1:
            raise UpscaleError(f"slices must be >= 1, got {slices}")
        rows = math.ceil(H / min(int(slices), H))
    return max(1, min(rows, queries_per_call(model) // max(1, width)))


def tile_radius(model):
    """The encoder's receptive radius when ``model`` can be encoded in tiles (a LIIF with a
    decoder and an encoder whose receptive field is bounded), else None (encoded whole)."""
    from .reference.liif import LIIF as ReferenceLIIF
    from .tiling import receptive_radius

    if not isinstance(model, ReferenceLIIF) or getattr(model, "imnet", None) is None:
        return None
    return receptive_radius(model.encoder)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _encode(model, inp, tile, precision=None):
    """What the queries read: ``("projected", proj)`` for a fused LIIF (its first layer's feature
    columns applied once to the whole feature map, (1, h, w, N1)), else ``("feat", None)`` with
    ``model.feat`` set. Encoders whose receptive field is bounded run tile by tile."""
    from .nn.liif import mlp_linears
    from .ops import dot_precision, project_features
    from .tiling import core_size, encode_tiled

    radius = tile_radius(model)
    linears = mlp_linears(model.imnet) if is_fused(model) and model.imnet is not None else None
    tile = None if radius is None else (core_size(radius) if tile is None else int(tile))
    if linears is None:
        if radius is None:
            model.gen_feat(inp)  # sets model.feat (the official interface)
        else:
            model.feat = encode_tiled(model.encoder, inp, tile, radius)
        return "feat", None
    n_feat = model.encoder.out_dim * (9 if model.feat_unfold else 1)
    w_feat = linears[0].weight[:, :n_feat].float()

    # On a GPU the projection's cuDNN TF32 switch follows the query's precision, as in liif_query.
    conv_prec = dot_precision(torch.float32, inp.device, precision) if inp.device.type == "cuda" else None

    def head(feat):  # fp32 storage, as liif_query keeps it for the Triton kernel under autocast
        with torch.autocast(inp.device.type, enabled=False):
            return project_features(feat.float(), w_feat, model.feat_unfold, conv_prec).permute(0, 3, 1, 2)

    if radius is None:
        proj = head(model.gen_feat(inp))
        model.feat = None
    else:
        proj = encode_tiled(model.encoder, inp, tile, radius, head=head, margin=1 if model.feat_unfold else 0)
    return "projected", proj.permute(0, 2, 3, 1).contiguous()


def _projected_query(model, proj, precision):
    from .nn.liif import mlp_linears
    from .ops.liif_query import choose_backend, liif_query_projected

    linears = mlp_linears(model.imnet)
    n_feat = model.encoder.out_dim * (9 if model.feat_unfold else 1)
    weights = [m.weight.float() for m in linears]
    biases = [(m.bias if m.bias is not None else m.weight.new_zeros(m.out_features)).float() for m in linears]
    resolve_backend(model.backend, proj.device)  # one-line errors for a bad name or device
    try:  # the decoder-aware choice liif_query makes (falls back when a fused kernel rejects it)
        name = choose_backend(proj, weights, model.backend, needs_grad=False)[0]
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UpscaleError(str(exc)) from None

    def query(coord, cell):
        with torch.autocast(proj.device.type, enabled=False):
            return liif_query_projected(proj, coord, cell, weights[0][:, n_feat:], biases[0], weights[1:],
                                        biases[1:], model.local_ensemble, model.cell_decode, name, precision)
    return query


def upscale_tiles(model, x, out_hw, *, precision=None, slices=None, tile=None, timings=None):
    """Upscale a float CxHxW image in [0, 1] band by band: yields ``((r0, r1), pixels)`` with
    ``pixels`` a float32 C x (r1-r0) x W CPU tensor in [0, 1], the same channels as ``x``; the
    bands cover the output once, top to bottom. UpscaleError when the model produces NaN or inf.

    ``tile``: LR cells per encoder tile side (default tiling.core_size of the encoder's radius);
    models whose encoder cannot be bounded are encoded whole.
    """
    if x.dim() != 3 or x.shape[0] not in (1, 2, 3, 4) or x.shape[1] < 1 or x.shape[2] < 1:
        raise UpscaleError(f"expected a CxHxW image with 1-4 channels, got shape {tuple(x.shape)}")
    H, W = out_hw
    device = next(model.parameters()).device
    c = x.shape[0]
    rgb = x[:1].expand(3, -1, -1) if c in (1, 2) else x[:3]
    alpha = x[-1:].float()[None] if c in (2, 4) else None
    timings = {} if timings is None else timings
    timings.setdefault("query", 0.0)
    ys, xs = make_coord((H,))[:, 0], make_coord((W,))[:, 0]  # per axis: slices of the (H, W) grid, bit for bit
    rows = rows_per_call(model, out_hw, slices)
    with torch.no_grad(), precision_mode(precision, device):
        t0 = time.perf_counter()
        inp = ((rgb.float() - 0.5) / 0.5).unsqueeze(0).to(device)
        kind, proj = _encode(model, inp, tile, precision)
        query = _projected_query(model, proj, precision) if kind == "projected" else model.query_rgb
        _sync(device)
        timings["encode"] = time.perf_counter() - t0
        try:
            for r0 in range(0, H, rows):
                t0 = time.perf_counter()
                r1 = min(H, r0 + rows)
                coord = torch.stack(torch.meshgrid(ys[r0:r1], xs, indexing="ij"), dim=-1).view(-1, 2)
                cell = make_cell(coord, (H, W))
                pred = query(coord.unsqueeze(0).to(device), cell.unsqueeze(0).to(device))[0]
                band = _finish(pred, r1 - r0, W, c, alpha, ys[r0:r1], xs)
                timings["query"] += time.perf_counter() - t0
                yield (r0, r1), band
        finally:
            model.feat = None  # free the features
            del proj


def _finish(pred, rows, cols, channels, alpha, ys, xs):
    """A query's prediction (rows*cols, 3) -> float C x rows x cols in [0, 1] on the CPU: back from
    LIIF's normalisation, gray for gray inputs, plus the alpha plane (bicubic) where there is one."""
    pred = pred.float()
    if not bool(torch.isfinite(pred).all()):
        raise UpscaleError("the model produced NaN or infinite values: nothing was written (a diverged or "
                           "corrupt checkpoint?)")
    out = (pred * 0.5 + 0.5).clamp_(0, 1).view(rows, cols, 3).permute(2, 0, 1).cpu()
    if channels in (1, 2):
        out = torch.tensordot(torch.tensor(LUMA), out, dims=1).unsqueeze(0)
    if alpha is not None:
        out = torch.cat([out, bicubic_at(alpha, ys, xs)])
    return out


def bicubic_at(plane, ys, xs):
    """``F.interpolate(plane, mode='bicubic', align_corners=False)`` evaluated only at the output
    pixel centres ``ys`` x ``xs`` (make_coord values): grid_sample's bicubic with border padding
    takes the same 4x4 taps with the same clamping. plane: (1, 1, h, w); returns 1 x len(ys) x len(xs)."""
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flip(-1)[None]
    out = F.grid_sample(plane, grid, mode="bicubic", padding_mode="border", align_corners=False)
    return out[0].clamp_(0, 1)


def upscale_tensor(model, x, out_hw, *, precision=None, slices=None, progress=True, timings=None, tile=None):
    """Upscale a float CxHxW image in [0, 1] (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to
    ``out_hw = (H, W)`` with a LIIF ``model`` (fused ``fastliif.nn.LIIF`` or any module with the
    official ``gen_feat`` / ``query_rgb``). Returns a float32 CxHxW CPU tensor in [0, 1].

    For outputs of any size, ``upscale_file`` writes the bands of :func:`upscale_tiles` into an
    8-bit image instead of holding this float one. ``timings``: a dict that receives the
    seconds of each phase.
    """
    H, W = out_hw
    out = torch.empty(x.shape[0], H, W)
    with _bar(H * W, progress) as bar:
        for (r0, r1), px in upscale_tiles(model, x, out_hw, precision=precision, slices=slices, tile=tile,
                                          timings=timings):
            out[:, r0:r1] = px
            bar.set_description("LIIF query", refresh=False)
            bar.update((r1 - r0) * W)
    return out


def _bar(pixels, progress):
    # the first update comes after the whole encoder pass (minutes on a CPU for a large photo): say so
    return tqdm(total=pixels, unit="px", unit_scale=True, desc="LIIF (encoding, then query)", leave=False,
                file=sys.stderr, disable=not (progress and pixels > PROGRESS_PIXELS))


# ------------------------------------------------------------------------------------------ files

def image_to_tensor(img):
    """A PIL image of any common mode -> float CxHxW in [0, 1] with 1 (gray), 2 (gray + alpha),
    3 (RGB) or 4 (RGBA) channels; palette transparency becomes alpha."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA" or mode == "RGBa":
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    return pil_to_tensor(img).clamp_(0, 1)


def check_output_path(path, out_hw=None, channels=3):
    """(Pillow format, save options, note) for the output; UpscaleError for a format that cannot be
    written faithfully (fastliif.data.io.OUTPUT_FORMATS), a size past its limit, or a parent
    that is not a folder. Called before any compute."""
    try:
        fmt = output_format(path, out_hw, channels)
    except ValueError as exc:
        raise UpscaleError(str(exc)) from None
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise UpscaleError(f"{path}: {parent} is not a directory")
    return fmt


@dataclass
class UpscaleResult:
    input_size: tuple    # (height, width)
    output_size: tuple   # (height, width)
    channels: int
    backend: str
    seconds: dict = field(default_factory=dict)  # load, encode, query, write, total
    notes: list = field(default_factory=list)    # things the user should know (e.g. alpha dropped)


def resolve_backend(backend, device):
    """The query backend that will run ("reference" or a fused backend name); raises clear errors."""
    if backend not in BACKENDS:
        raise UpscaleError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    if backend == "cpu" and device.type != "cpu":
        raise UpscaleError(f"--backend cpu runs on the CPU but the device is {device}: pass --device cpu, "
                           "or --backend auto")
    if backend == "reference":
        return backend
    from .ops._backends import resolve
    try:
        return resolve(backend, device, torch.float32)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UpscaleError(str(exc)) from None


def parse_device(device, backend="auto"):
    """torch.device from "cpu", "cuda[:N]" or "auto" (cuda when available, except for the cpu backend)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() and backend != "cpu" else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise UpscaleError(f"--device must be cpu or cuda, got {device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UpscaleError(f"--device must be cpu or cuda, got {device}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UpscaleError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return device


def upscale_file(input_path, output_path, *, scale=None, size=None, model=None, backend="auto", precision=None,
                 device="cpu", slices=None, progress=True, tile=None):
    """Read ``input_path``, upscale by ``scale`` or to ``size = (height, width)``, write ``output_path``
    (format from its extension: fastliif.data.io.OUTPUT_FORMATS). ``model``: a LIIF module, a
    checkpoint path, or None for the bundled model. The output is written atomically: a failed
    or killed run leaves an existing ``output_path`` (even the input itself) untouched.
    Returns an UpscaleResult; raises UpscaleError, FileNotFoundError or ValueError (unreadable
    input) with a message for the user before any large allocation, and UpscaleError, writing
    nothing, when the model produces NaN or inf.
    """
    from .pretrained import load_pretrained, to_reference

    t_start = time.perf_counter()
    check_output_path(output_path)  # the format first: nothing is read or computed for a refused one
    device = parse_device(device, backend)
    check_precision(precision, device)
    if isinstance(size, str):
        size = parse_size(size)
    resolve_backend(backend, device)  # early, clear errors for a backend this device cannot run
    try:
        img = open_image(input_path)
    except Image.DecompressionBombError as exc:
        raise UpscaleError(f"{input_path}: {exc}") from None
    img = ImageOps.exif_transpose(img)  # camera JPEGs: the output carries no EXIF, so apply the rotation
    in_hw = (img.height, img.width)
    out_hw = output_size(in_hw, scale=scale, size=size)
    x = image_to_tensor(img)
    del img
    _, _, note = check_output_path(output_path, out_hw, x.shape[0])
    if model is None or isinstance(model, (str, os.PathLike)):
        model = load_pretrained(model, backend=backend, device=device)
    else:
        model = model.to(device).eval()
        if is_fused(model) and backend == "reference":
            model = to_reference(model)
        elif is_fused(model) and backend != "auto":
            model.backend = backend
    check_memory(model, in_hw, out_hw, x.shape[0], device)
    name = resolve_backend(model.backend, device) if is_fused(model) else "reference"
    result = UpscaleResult(in_hw, out_hw, x.shape[0], name)
    if note:
        result.notes.append(note)
    result.seconds["load"] = time.perf_counter() - t_start
    H, W = out_hw
    out = np.empty((H, W, x.shape[0]), dtype=np.uint8)  # the only full-size buffer: 8 bits a sample
    with _bar(H * W, progress) as bar:
        for (r0, r1), px in upscale_tiles(model, x, out_hw, precision=precision, slices=slices, tile=tile,
                                          timings=result.seconds):
            out[r0:r1] = (px * 255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
            bar.set_description("LIIF query", refresh=False)
            bar.update((r1 - r0) * W)
    t0 = time.perf_counter()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[out.shape[2]]
    img = Image.fromarray(out[:, :, 0] if mode == "L" else out, mode=mode)
    del out
    write_image(img, output_path)
    result.seconds["write"] = time.perf_counter() - t0
    result.seconds["total"] = time.perf_counter() - t_start
    return result


__all__ = ["upscale_file", "upscale_tensor", "upscale_tiles", "output_size", "parse_size", "estimate_memory",
           "check_memory", "check_output_path", "available_memory", "image_to_tensor", "UpscaleError",
           "UpscaleResult", "PRECISIONS", "BACKENDS"]
