"""Side by side: several models' grid-study results (``scripts/grid_study.py --json``) on the same
crops, as one markdown table (docs/grid_study.md): per crop and scale, each model's Y-PSNR gain
over bicubic, grid (periodic) RMS, level shift (interior bias) and spectral peak at 1/s.

    python scripts/grid_table.py old=docs/grid_study.json stage1=docs/grid_study_stage1.json \
        new=docs/grid_study_new.json [--smooth-only] [--md OUT.md]
"""
import argparse
import json
import sys

from fastliif import atomic


def table(runs, smooth_only=False):
    """runs: [(label, grid_study result)] -> markdown lines."""
    keyed = [(label, {(c["name"], c["scale"]): c for c in result["crops"]}) for label, result in runs]
    keys = [k for k in keyed[0][1] if all(k in crops for _, crops in keyed)]
    if smooth_only:
        keys = [k for k in keys if keyed[0][1][k]["smooth"]]
    labels = " / ".join(label for label, _ in runs)
    lines = [f"| crop | scale | bicubic Y-PSNR | gain, {labels} | grid RMS, {labels} (bicubic) "
             f"| level shift, {labels} | peak at 1/s, {labels} (HR) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, scale in keys:
        rows = [crops[(name, scale)] for _, crops in keyed]
        first = rows[0]

        def each(fmt, value):
            return " / ".join(format(value(r), fmt) for r in rows)

        lines.append(
            f"| {name}{' (smooth)' if first['smooth'] else ''} | x{scale} | {first['bicubic_psnr']:.2f} "
            f"| {each('+.2f', lambda r: r['model_psnr'] - r['bicubic_psnr'])} "
            f"| {each('.3f', lambda r: r['model_periodic_rms'])} ({first['bicubic_periodic_rms']:.3f}) "
            f"| {each('+.3f', lambda r: r['model_interior_bias'])} "
            f"| {each('.0f', lambda r: r['model_peak_db'])} ({first['hr_peak_db']:.0f}) |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=grid_study.json (same crops)")
    p.add_argument("--smooth-only", action="store_true", help="only the crops marked smooth")
    p.add_argument("--md", help="also write the table here")
    args = p.parse_args(argv)
    runs = []
    try:
        for item in args.runs:
            label, sep, path = item.partition("=")
            if not sep or not label or not path:
                raise ValueError(f"{item!r}: expected LABEL=PATH")
            with open(path, encoding="utf-8") as f:
                runs.append((label, json.load(f)))
        text = "\n".join(table(runs, args.smooth_only)) + "\n"
        if args.md:
            atomic.write_text(args.md, text)
    except (OSError, ValueError, KeyError) as exc:
        print(f"grid_table: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
