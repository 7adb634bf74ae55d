"""The bundled model's quality report: two ``fastliif eval --json`` results (a new and an old model,
same images and scales) -> the README's per-image table (Y-PSNR of new / old / bicubic, gain of
the new model over bicubic) as markdown, and a figure of every image's gain over bicubic per scale.

    python scripts/quality_table.py docs/bundled_eval.json docs/old_bundled_eval.json \
        --md docs/bundled_eval.md --plot docs/bundled_eval.png

It also checks the issue-13 bar and says which parts pass: the new model beats bicubic on every
image at every scale, and its mean gain is >= +1.2 / +1.0 / +1.0 dB at x2 / x3 / x4.
"""
import argparse
import json
import sys

from fastliif import atomic

BAR = {2: 1.2, 3: 1.0, 4: 1.0}


def load(path):
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    return {float(r["scale"]): {p["name"]: p for p in r["per_image"]} for r in result["scales"]}


def scale_name(s):
    return f"x{s:g}"


def check_bar(new):
    """[(what, passed, detail)] for the issue-13 quality bar."""
    out = []
    for s, images in new.items():
        worst = min(images.values(), key=lambda p: p["psnr"] - p["bicubic_psnr"])
        gain = worst["psnr"] - worst["bicubic_psnr"]
        out.append((f"{scale_name(s)}: beats bicubic on every image", gain > 0,
                    f"smallest gain {gain:+.2f} dB ({worst['name']})"))
        mean = sum(p["psnr"] - p["bicubic_psnr"] for p in images.values()) / len(images)
        need = BAR.get(s)  # scales without a number need only a gain
        what, ok = ((f"mean gain > {0:+.1f} dB", mean > 0) if need is None else
                    (f"mean gain >= {need:+.1f} dB", mean >= need))
        out.append((f"{scale_name(s)}: {what}", ok, f"mean gain {mean:+.2f} dB"))
    return out


def markdown(new, old):
    scales = sorted(new)
    names = list(next(iter(new.values())))
    head = "| image | " + " | ".join(f"{scale_name(s)} new / old / bicubic (gain)" for s in scales) + " |"
    lines = [head, "|---|" + "---:|" * len(scales)]
    for name in names:
        cells = []
        for s in scales:
            n, o = new[s][name], old[s][name]
            cells.append(f"{n['psnr']:.2f} / {o['psnr']:.2f} / {n['bicubic_psnr']:.2f} "
                         f"({n['psnr'] - n['bicubic_psnr']:+.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for s in scales:
        k = len(new[s])
        mn = sum(p["psnr"] for p in new[s].values()) / k
        mo = sum(p["psnr"] for p in old[s].values()) / k
        mb = sum(p["bicubic_psnr"] for p in new[s].values()) / k
        cells.append(f"**{mn:.2f}** / {mo:.2f} / {mb:.2f} (**{mn - mb:+.2f}**; old {mo - mb:+.2f})")
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(new, old, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scales = sorted(new)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, result, color, dx in (("new bundled model", new, "C0", 0.06), ("old bundled model", old, "C7", -0.06)):
        for i, s in enumerate(scales):
            gains = [p["psnr"] - p["bicubic_psnr"] for p in result[s].values()]
            ax.scatter([i + dx] * len(gains), gains, s=12, color=color, alpha=0.7,
                       label=label if i == 0 else None)
            ax.plot([i + dx - 0.1, i + dx + 0.1], [sum(gains) / len(gains)] * 2, color=color, lw=2)
    ax.axhline(0, color="k", lw=0.8)
    for i, s in enumerate(scales):
        if s in BAR:
            ax.plot([i - 0.25, i + 0.25], [BAR[s]] * 2, "r--", lw=1, label="bar (mean)" if s == 2 else None)
    ax.set_xticks(range(len(scales)), [scale_name(s) for s in scales])
    ax.set_ylabel("Y-PSNR gain over bicubic (dB)")
    ax.set_title("Per image (dots) and mean (bars), photographs never trained on")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new", help="fastliif eval --json of the new model")
    p.add_argument("old", help="fastliif eval --json of the old model (same images and scales)")
    p.add_argument("--md", help="write the markdown table here")
    p.add_argument("--plot", help="write the figure here")
    args = p.parse_args(argv)
    try:
        new, old = load(args.new), load(args.old)
    except (OSError, ValueError, KeyError) as exc:
        print(f"quality_table: cannot read the results: {exc}", file=sys.stderr)
        return 2
    if sorted(new) != sorted(old) or any(sorted(new[s]) != sorted(old[s]) for s in new):
        print("quality_table: the two results do not cover the same images and scales", file=sys.stderr)
        return 2
    table = markdown(new, old)
    bar = check_bar(new)
    text = table + "\n" + "\n".join(f"- {'PASS' if ok else 'FAIL'} {what}: {detail}" for what, ok, detail in bar) + "\n"
    print(text, end="")
    if args.md:
        atomic.write_text(args.md, text)
    if args.plot:
        plot(new, old, args.plot)
    return 0 if all(ok for _, ok, _ in bar) else 1


if __name__ == "__main__":
    sys.exit(main())
