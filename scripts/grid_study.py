"""Measure the faint grid a LIIF model draws at the LR pixel spacing in flat areas (issue 13).

    python scripts/grid_study.py --model fastliif/assets/liif-edsr-baseline.pth \
        --crops /work/data/photos/val_crops --json docs/grid_study.json --plot docs/grid_study.png

At an integer scale s the LR pixels are s output pixels apart, so a grid tied to them is periodic
with period s and lives on the DFT bins k*N/s of an N-pixel crop. Three measures, on the Y
(luma) channel, the border shaved as the PSNR protocol does (``s`` pixels), for the model and
for bicubic (``fastliif.data.resize``, MATLAB-style, the same that makes the LR input):

- ``peak_db``: the power at the LR frequency (the bins (0, N/s) and (N/s, 0), both axes of a
  Hann-windowed crop) over the median power of the surrounding bins (a 7x7 block without the
  peak), in dB: how far a periodic pattern stands out of its neighbourhood;
- ``periodic_rms``: the RMS of the error image (output - HR) folded on the s x s phases of the LR
  grid (the mean error at each of the s^2 positions inside an LR cell, minus their mean), in
  8-bit levels: the part of the error that repeats every LR pixel, i.e. the grid's amplitude;
- ``psnr``: Y-PSNR with ``s`` pixels shaved (the benchmark protocol).

And two probes of where the grid comes from, on constant-colour inputs (whose ideal output is the
same constant, so every wiggle in the interior is grid): the model as trained (local ensemble on)
and with ``local_ensemble=False`` (the nearest feature alone: the output then jumps at every
cell border), plus the interior vs. the border band (the encoder's zero padding).
"""
import argparse
import glob
import json
import math
import os
import re
import sys

import torch

from fastliif import metrics
from fastliif.atomic import save_figure, write_json
from fastliif.data.io import load_image
from fastliif.data.resize import resize
from fastliif.evaluate import downsample, super_resolve
from fastliif.pretrained import load_pretrained

SCALES = (2, 3, 4)
FLAT_LEVELS = (0.2, 0.5, 0.8)  # grey levels of the constant-input probe
BORDER = 4                     # LR pixels from a crop's edge that count as its border band
# Constant-input probe: LR side, and its border band: 40 LR pixels covers the encoder's receptive
# field (radius 2 * n_resblocks + 2: 18 for the bundled 8-block model, 34 for the official 16), so
# every interior feature vector is the same and the interior output can only vary with position.
PROBE_LR = 128
PROBE_BORDER = 40


def luma(x):
    return metrics.rgb_to_y(x[None])[0, 0] if x.shape[0] == 3 else x[0]


def peak_db(y, s):
    """Power at the LR frequency 1/s (both axes) over its neighbourhood's median, dB."""
    n_h, n_w = y.shape
    win = torch.hann_window(n_h, periodic=False, dtype=torch.float64)[:, None] * \
        torch.hann_window(n_w, periodic=False, dtype=torch.float64)[None]
    y = y.double()
    power = torch.fft.fft2((y - y.mean()) * win).abs().pow(2)
    ratios = []
    for (ky, kx) in ((0, n_w / s), (n_h / s, 0)):
        ky, kx = int(round(ky)), int(round(kx))
        rows = [(ky + d) % n_h for d in range(-3, 4)]
        cols = [(kx + d) % n_w for d in range(-3, 4)]
        block = power[rows][:, cols].flatten()
        around = torch.cat([block[:24], block[25:]])  # the 7x7 block less its centre
        ratios.append(float(power[ky, kx] / around.median().clamp_min(1e-30)))
    return 10 * math.log10(max(sum(ratios) / 2, 1e-30))


def periodic_rms(err, s):
    """RMS over the s x s phases of the mean error at each phase (mean removed), 8-bit levels.
    ``err`` must start on an LR cell boundary (the shave is a multiple of s)."""
    h, w = err.shape[0] // s * s, err.shape[1] // s * s
    phases = err[:h, :w].double().reshape(h // s, s, w // s, s).mean(dim=(0, 2))
    return float((phases - phases.mean()).pow(2).mean().sqrt() * 255)


def lowfreq_rms(err, block):
    """RMS of the error's local means over ``block`` x ``block`` tiles, 8-bit levels: the slowly
    varying part (level / colour shifts), which a grid at the LR spacing averages out of."""
    h, w = err.shape[0] // block * block, err.shape[1] // block * block
    means = err[:h, :w].double().reshape(h // block, block, w // block, block).mean(dim=(1, 3))
    return float(means.pow(2).mean().sqrt() * 255)


def measure(model, hr, s):
    """Grid and PSNR numbers of the model and of bicubic on one HR crop at integer scale s."""
    hr, lr = downsample(hr, s, "matlab")
    size = tuple(hr.shape[-2:])
    out = {"model": super_resolve(model, lr, size), "bicubic": resize(lr, size, "matlab").clamp(0, 1)}
    y_hr = luma(hr)[s:-s, s:-s]
    b = BORDER * s - s  # the interior starts BORDER LR pixels in (already s shaved)
    row = {"hr_peak_db": peak_db(y_hr, s)}
    for name, img in out.items():
        y = luma(img)[s:-s, s:-s]
        err = (y - y_hr).double()
        inner = err[b:-b, b:-b]
        row[f"{name}_peak_db"] = peak_db(y, s)
        row[f"{name}_periodic_rms"] = periodic_rms(inner, s)  # inner starts on an LR cell edge
        row[f"{name}_psnr"] = float(metrics.psnr(img[None], hr[None], protocol="benchmark", scale=s)[0])
        # Where the error is: all of it, the interior, and the interior's mean (a level shift).
        row[f"{name}_rms"] = float(err.pow(2).mean().sqrt() * 255)
        row[f"{name}_interior_rms"] = float(inner.pow(2).mean().sqrt() * 255)
        row[f"{name}_interior_bias"] = float(inner.mean() * 255)
        row[f"{name}_lowfreq_rms"] = lowfreq_rms(inner, 4 * s)
    return row, out


def flat_probe(model, level, s, ensemble, border):
    """Std and peak-to-peak (8-bit levels) of the output for a constant LR input (``level``: a grey
    level or an RGB triple): interior (``border`` LR pixels away from the edges) and the border band."""
    colour = torch.as_tensor(level, dtype=torch.float32).reshape(-1, 1, 1)
    lr = colour.expand(3, PROBE_LR, PROBE_LR).contiguous()
    saved = model.local_ensemble
    model.local_ensemble = ensemble
    try:
        y = luma(super_resolve(model, lr, (PROBE_LR * s, PROBE_LR * s))).double() * 255
    finally:
        model.local_ensemble = saved
    b = border * s
    inner = y[b:-b, b:-b]
    band = torch.cat([y[:b].flatten(), y[-b:].flatten(), y[b:-b, :b].flatten(), y[b:-b, -b:].flatten()])
    target = float(luma(lr)[0, 0]) * 255  # the ideal output's luma
    return {"level": level if isinstance(level, float) else [round(float(v), 4) for v in level], "scale": s, "ensemble": ensemble,
            "interior_std": float(inner.std()), "interior_ptp": float(inner.max() - inner.min()),
            "interior_periodic_rms": periodic_rms((inner - target) / 255, s),
            "interior_bias": float(inner.mean() - target),
            "border_max_dev": float((band - target).abs().max())}


def _short(name):
    return re.sub(r"_by_[A-Za-z_]+", "", name)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crops, probes = results["crops"], results["flat_probe"]
    fig, ax = plt.subplots(1, 4, figsize=(19, 4.4))

    def mean(rows, key):
        return sum(r[key] for r in rows) / max(1, len(rows))

    for label, smooth in (("smooth", True), ("textured", False)):
        for key, style in (("model", "-o"), ("bicubic", "--s")):
            ax[0].plot(SCALES, [mean([r for r in crops if r["smooth"] == smooth and r["scale"] == s],
                                     f"{key}_periodic_rms") for s in SCALES], style, label=f"{key}, {label} crops")
    ax[0].set(xlabel="scale", ylabel="8-bit levels", title="periodic (grid) part of the error, crops")
    for ens, style in ((True, "-o"), (False, "--o")):
        ax[1].plot(SCALES, [mean([p for p in probes if p["scale"] == s and p["ensemble"] == ens], "interior_std")
                            for s in SCALES], style, label=f"local ensemble {'on' if ens else 'off'}")
    ax[1].set(xlabel="scale", ylabel="8-bit levels (mean over grey levels)",
              title="constant input: interior output std (all grid)")
    x2 = [r for r in crops if r["scale"] == 2 and r["smooth"]]
    parts = ("periodic_rms", "lowfreq_rms", "interior_rms")
    width = 0.38
    for j, key in enumerate(("model", "bicubic")):
        for i, part in enumerate(parts):
            ax[2].bar([k + j * width + i * (len(x2) + 1) for k in range(len(x2))], [r[f"{key}_{part}"] for r in x2],
                      width, color=("tab:blue", "tab:orange")[j], alpha=(0.5, 0.75, 1.0)[i],
                      label=f"{key}" if i == 2 else None)
    ax[2].set_xticks([(len(x2) - 1) / 2 + i * (len(x2) + 1) for i in range(len(parts))],
                     ["periodic (grid)", "low-frequency", "all (interior)"])
    ax[2].set(ylabel="error RMS, 8-bit levels", title="x2 smooth crops: where the error is (bar per crop)")
    x2all = [r for r in crops if r["scale"] == 2]
    ax[3].barh(range(len(x2all)), [r["model_psnr"] - r["bicubic_psnr"] for r in x2all],
               color=["tab:blue" if r["smooth"] else "tab:gray" for r in x2all])
    ax[3].set_yticks(range(len(x2all)), [_short(r["name"]) for r in x2all], fontsize=8)
    ax[3].axvline(0, color="k", lw=0.8)
    ax[3].set(xlabel="Y-PSNR gain over bicubic at x2 (dB)", title="per crop (blue: smooth)")
    for a in ax[:3]:
        a.legend(fontsize=7)
    for a in ax[:2]:
        a.set_xticks(SCALES)
    fig.suptitle(os.path.basename(results["model"]))
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def study(model_path, crops_dir, scales=SCALES):
    paths = sorted(glob.glob(os.path.join(crops_dir, "*.png")))
    if not paths:
        raise FileNotFoundError(f"no PNG crops in {crops_dir} (make them with scripts/get_photos.sh)")
    model = load_pretrained(model_path)
    rows, colour_probes = [], []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        smooth = name.rsplit("-", 1)[-1] in ("sky", "water", "bokeh")
        hr = load_image(path)
        if smooth:
            # Same colour, no content: is the level shift a function of colour alone?
            p = flat_probe(model, hr.mean(dim=(1, 2)).tolist(), 2, True, PROBE_BORDER)
            colour_probes.append({"name": name, **p})
        for s in scales:
            row, _ = measure(model, hr, s)
            rows.append({"name": name, "smooth": smooth, "scale": s, **row})
            print(f"{name:45s} x{s}: PSNR {row['model_psnr']:.2f} / bicubic {row['bicubic_psnr']:.2f}; "
                  f"periodic RMS {row['model_periodic_rms']:.3f} / {row['bicubic_periodic_rms']:.3f}; "
                  f"peak {row['model_peak_db']:.1f} / {row['bicubic_peak_db']:.1f} / HR {row['hr_peak_db']:.1f} dB; "
                  f"RMS {row['model_rms']:.3f} / {row['bicubic_rms']:.3f}, interior {row['model_interior_rms']:.3f} / "
                  f"{row['bicubic_interior_rms']:.3f}, bias {row['model_interior_bias']:+.3f} / {row['bicubic_interior_bias']:+.3f}, "
                  f"low-freq {row['model_lowfreq_rms']:.3f} / {row['bicubic_lowfreq_rms']:.3f}",
                  flush=True)
    probes = [flat_probe(model, level, s, ensemble, border=PROBE_BORDER)
              for level in FLAT_LEVELS for s in scales for ensemble in (True, False)]
    for p in probes:
        print(f"flat {p['level']} x{p['scale']} ensemble={p['ensemble']}: interior std {p['interior_std']:.3f} "
              f"ptp {p['interior_ptp']:.3f} periodic {p['interior_periodic_rms']:.3f} bias {p['interior_bias']:+.3f}; "
              f"border max dev {p['border_max_dev']:.2f} (8-bit levels)", flush=True)
    for p in colour_probes:
        crop_bias = next(r["model_interior_bias"] for r in rows if r["name"] == p["name"] and r["scale"] == 2)
        print(f"constant input of {p['name']}'s mean colour, x2: bias {p['interior_bias']:+.3f} "
              f"(on the crop itself {crop_bias:+.3f}), periodic {p['interior_periodic_rms']:.3f} (8-bit levels)")
    return {"model": model_path, "crops": rows, "flat_probe": probes, "colour_probe": colour_probes}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="LIIF checkpoint (default: the bundled model)")
    p.add_argument("--crops", default="/work/data/photos/val_crops", help="folder of HR crops (*-sky.png ...)")
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--plot", help="write the figure here")
    args = p.parse_args(argv)
    try:
        results = study(args.model, args.crops)
    except (FileNotFoundError, ValueError) as exc:
        print(f"grid_study: {exc}", file=sys.stderr)
        return 2
    results["model"] = args.model or "fastliif/assets/liif-edsr-baseline.pth"
    if args.json:
        write_json(args.json, results)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
