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
interpolation (``F.interpolate``, ``align_corners=False``) and kept.

The whole output is one query call (no batched_predict: the fused op's working memory does
not grow with the number of queries). A call into the fused kernel cannot report progress from
inside, so on outputs above ``PROGRESS_PIXELS`` the bar advances by phase (encode, query) and
shows the elapsed time; ``slices=N`` (CLI ``--slices N``) queries N row bands instead, for a
bar that moves within the query. Slicing gives the same pixels bit for bit and needs no more
memory: the encoder still runs once and every query is independent. The reference backend,
whose memory does grow with the queries (~7 KB each), is queried in chunks of
``REFERENCE_CHUNK`` as the official ``batched_predict``.
"""
import contextlib
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from .data.io import open_image, pil_to_tensor, save_image
from .reference.coord import make_cell, make_coord

PRECISIONS = ("ieee", "tf32", "bf16", "fp16")
BACKENDS = ("auto", "cpu", "torch", "triton", "reference")
PROGRESS_PIXELS = 1 << 20  # outputs above ~1 MP (seconds on a CPU) get a progress bar
REFERENCE_CHUNK = 30000  # queries per reference call: the official test-time batched_predict bsize
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, Pillow's RGB -> L
JPEG_MAX_SIDE = 65535
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


def estimate_memory(model, in_hw, out_hw, channels, fused, rows_per_call):
    """(host bytes, device bytes) an upscale needs, conservatively; device bytes are 0 on CPU runs
    (add them to the host figure).

    Host: the output image (prediction, alpha, float and 8-bit copies). Device: the encoder's
    feature maps, the projected features (fused) or the unfolded ones (reference), and the
    coordinates, cells and predictions of one call; the reference also holds its MLP inputs
    and activations per query of a chunk.
    """
    h, w = in_hw
    H, W = out_hw
    feats = getattr(getattr(model, "encoder", None), "out_dim", 64)
    widths = _widths(model)
    f32 = 4
    encoder = h * w * f32 * (3 + 4 * feats)
    per_lr = widths[0] if fused else 9 * feats
    q = rows_per_call * W
    per_query = (2 + 2 + 3) * f32  # coord, cell, prediction
    if fused:
        per_query += 128  # corner geometry of the torch / triton backends (cpu: none)
    else:
        per_query += f32 * (3 * (9 * feats + 4) + 3 * max(widths))
    device = encoder + h * w * per_lr * f32 + q * per_query
    host = H * W * (3 * f32 + channels * (f32 + 1) + (f32 if channels in (2, 4) else 0))
    return host, device


def check_memory(model, in_hw, out_hw, channels, fused, rows_per_call, device):
    host, dev = estimate_memory(model, in_hw, out_hw, channels, fused, rows_per_call)
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

def _fused_query(model, precision):
    """model.query_rgb, with ``precision`` passed to the fused op when the model is a fused LIIF.
    None when the model is not one (its own query_rgb is used)."""
    from .nn.liif import LIIF, mlp_linears
    from .ops import liif_query

    if not isinstance(model, LIIF) or model.imnet is None:
        return None
    linears = mlp_linears(model.imnet)
    if linears is None:
        return None
    weights = [m.weight for m in linears]
    biases = [m.bias if m.bias is not None else m.weight.new_zeros(m.out_features) for m in linears]

    def query(coord, cell):
        return liif_query(model.feat, coord, cell, weights, biases, feat_unfold=model.feat_unfold,
                          local_ensemble=model.local_ensemble, cell_decode=model.cell_decode,
                          backend=model.backend, precision=precision)
    return query


def is_fused(model):
    from .nn.liif import LIIF
    return isinstance(model, LIIF)


def rows_per_call(model, out_hw, slices=None):
    """Output rows per query call: all of them (one call), unless ``slices`` asks for row bands
    or the model is not fused (reference chunks of REFERENCE_CHUNK queries)."""
    H, W = out_hw
    if slices is None:
        slices = 1
    if int(slices) < 1:
        raise UpscaleError(f"slices must be >= 1, got {slices}")
    rows = math.ceil(H / max(1, min(int(slices), H)))
    if not is_fused(model):
        rows = min(rows, max(1, REFERENCE_CHUNK // W))
    return rows


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def upscale_tensor(model, x, out_hw, *, precision=None, slices=None, progress=True, timings=None):
    """Upscale a float CxHxW image in [0, 1] (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to
    ``out_hw = (H, W)`` with a LIIF ``model`` (fused ``fastliif.nn.LIIF`` or any module with the
    official ``gen_feat`` / ``query_rgb``). Returns a float32 CxHxW CPU tensor in [0, 1].

    ``slices``: number of row bands to query (default 1: the whole output in one call);
    ``timings``: a dict that receives the seconds of each phase.
    """
    if x.dim() != 3 or x.shape[0] not in (1, 2, 3, 4) or x.shape[1] < 1 or x.shape[2] < 1:
        raise UpscaleError(f"expected a CxHxW image with 1-4 channels, got shape {tuple(x.shape)}")
    H, W = out_hw
    device = next(model.parameters()).device
    c = x.shape[0]
    rgb = x[:1].expand(3, -1, -1) if c in (1, 2) else x[:3]
    alpha = x[-1:] if c in (2, 4) else None
    timings = {} if timings is None else timings
    query = _fused_query(model, precision) or model.query_rgb
    rows = rows_per_call(model, out_hw, slices)
    ys = make_coord((H,))[:, 0]  # per-axis make_coord: slices of the (H, W) grid, bit for bit
    xs = make_coord((W,))[:, 0]
    out = torch.empty(3, H, W)
    large = progress and H * W > PROGRESS_PIXELS
    band_bar = large and rows < H  # a bar that moves per row band
    phases = tqdm(total=2, desc="LIIF encode", bar_format="{desc}: phase {n_fmt}/{total_fmt} [{elapsed}]",
                  disable=not (large and not band_bar), leave=False, file=sys.stderr)
    with torch.no_grad(), precision_mode(precision, device), phases:
        t0 = time.perf_counter()
        inp = ((rgb.float() - 0.5) / 0.5).unsqueeze(0).to(device)
        model.gen_feat(inp)
        _sync(device)
        t1 = time.perf_counter()
        timings["encode"] = t1 - t0
        phases.update(1)
        phases.set_description(f"LIIF query, {H * W / 1e6:.2f} MP in one call")
        with tqdm(total=H * W, unit="px", unit_scale=True, desc="LIIF query", disable=not band_bar, leave=False,
                  file=sys.stderr) as bar:
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                coord = torch.stack(torch.meshgrid(ys[r0:r1], xs, indexing="ij"), dim=-1).view(-1, 2)
                cell = make_cell(coord, (H, W))
                pred = query(coord.unsqueeze(0).to(device), cell.unsqueeze(0).to(device))[0]
                pred = (pred.float() * 0.5 + 0.5).clamp_(0, 1)
                out[:, r0:r1] = pred.view(r1 - r0, W, 3).permute(2, 0, 1).cpu()
                bar.update((r1 - r0) * W)
        _sync(device)
        timings["query"] = time.perf_counter() - t1
        phases.update(1)
    model.feat = None  # free the features
    if c in (1, 2):
        out = torch.tensordot(torch.tensor(LUMA), out, dims=1).unsqueeze(0)
    if alpha is not None:
        up = F.interpolate(alpha.float().unsqueeze(0), size=(H, W), mode="bicubic", align_corners=False)
        out = torch.cat([out, up[0].clamp_(0, 1)])
    return out


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


def _check_output_path(path, out_hw):
    Image.init()
    ext = os.path.splitext(path)[1].lower()
    if ext not in Image.registered_extensions():
        raise UpscaleError(f"{path}: unknown image format {ext or '(no extension)'!r}; use .png or .jpg")
    if ext in (".jpg", ".jpeg") and max(out_hw) > JPEG_MAX_SIDE:
        raise UpscaleError(f"JPEG images are at most {JPEG_MAX_SIDE} pixels a side, the output is "
                           f"{out_hw[1]}x{out_hw[0]}: write a .png")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise UpscaleError(f"{path}: {parent} is not a directory")


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
    if backend == "reference":
        return backend
    from .ops._backends import resolve
    try:
        return resolve(backend, torch.device(device), torch.float32)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UpscaleError(str(exc)) from None


def parse_device(device):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
                 device="cpu", slices=None, progress=True):
    """Read ``input_path``, upscale by ``scale`` or to ``size = (height, width)``, write ``output_path``
    (format from its extension). ``model``: a LIIF module, a checkpoint path, or None for the
    bundled model. Returns an UpscaleResult; raises UpscaleError, FileNotFoundError or
    ValueError (unreadable input) with a message for the user before any large allocation.
    """
    from .pretrained import load_pretrained, to_reference

    t_start = time.perf_counter()
    device = parse_device(device)
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
    _check_output_path(output_path, out_hw)
    x = image_to_tensor(img)
    del img
    if model is None or isinstance(model, (str, os.PathLike)):
        model = load_pretrained(model, backend=backend, device=device)
    else:
        model = model.to(device).eval()
        if is_fused(model) and backend == "reference":
            model = to_reference(model)
        elif is_fused(model) and backend != "auto":
            model.backend = backend
    rows = rows_per_call(model, out_hw, slices)
    check_memory(model, in_hw, out_hw, x.shape[0], is_fused(model), rows, device)
    name = resolve_backend(model.backend, device) if is_fused(model) else "reference"
    result = UpscaleResult(in_hw, out_hw, x.shape[0], name)
    result.seconds["load"] = time.perf_counter() - t_start
    out = upscale_tensor(model, x, out_hw, precision=precision, slices=slices, progress=progress,
                         timings=result.seconds)
    t0 = time.perf_counter()
    ext = os.path.splitext(output_path)[1].lower()
    kwargs = {}
    if ext in (".jpg", ".jpeg"):
        kwargs["quality"] = 95
        if out.shape[0] in (2, 4):
            result.notes.append("JPEG has no alpha channel: the alpha plane was dropped (write a .png to keep it)")
    save_image(out, output_path, **kwargs)
    result.seconds["write"] = time.perf_counter() - t0
    result.seconds["total"] = time.perf_counter() - t_start
    return result


__all__ = ["upscale_file", "upscale_tensor", "output_size", "parse_size", "estimate_memory", "check_memory",
           "available_memory", "image_to_tensor", "UpscaleError", "UpscaleResult", "PRECISIONS", "BACKENDS"]
