"""`fastliif prepare-udvd SRC OUT`: SRMD/UDVD training patches, degraded once and saved."""
import sys


def register(sub):
    p = sub.add_parser("prepare-udvd", help="degrade HR images offline into UDVD training patches",
                       description="Blur (random Gaussian kernels), bicubic-downsample and add noise to random "
                                   "HR patches of every image in SRC; write LR (float32), HR, kernel PCA codes "
                                   "and noise levels to OUT for the 'udvd-prepared' dataset.")
    p.add_argument("src", metavar="SRC", help="directory of HR images")
    p.add_argument("out", metavar="OUT", help="output directory")
    p.add_argument("--scale", type=int, default=2, help="downsampling factor (default 2; UDVD is x2)")
    p.add_argument("--patch-size", type=int, default=96, help="HR patch side, a multiple of --scale (default 96)")
    p.add_argument("--per-image", type=int, default=8, help="patches per image (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--kernels", default="isotropic",
                   help="comma-separated kernel kinds: isotropic (UDVD), anisotropic (SRMD adds it)")
    p.add_argument("--noise-max", type=float, default=75.0, help="noise levels uniform in [0, this] (0-255 units)")
    p.add_argument("--pca", default=None,
                   help="PCA matrix file written by fastliif (tensors only; pickles are refused) "
                        "(default: the cached default PCA)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace prepared data already in OUT (it stays valid until the new data is complete)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def fail(msg):
    print(f"fastliif prepare-udvd: error: {msg}", file=sys.stderr)
    return 2


def run(args):
    import os

    from ..data.udvd_data import prepare_udvd

    if not os.path.isdir(args.src):
        return fail(f"source directory not found: {args.src}")
    for value, name in ((args.scale, "--scale"), (args.patch_size, "--patch-size"), (args.per_image, "--per-image")):
        if value < 1:
            return fail(f"{name} must be >= 1")
    if args.patch_size % args.scale:
        return fail(f"--patch-size {args.patch_size} must be a multiple of --scale {args.scale}")
    if not args.noise_max >= 0:
        return fail("--noise-max must be >= 0")
    kinds = tuple(k.strip() for k in args.kernels.split(",") if k.strip())
    try:
        m = prepare_udvd(args.src, args.out, scale=args.scale, patch_size=args.patch_size, n_per_image=args.per_image,
                         kernel_kinds=kinds, noise_range=(0.0, args.noise_max), seed=args.seed, pca=args.pca,
                         overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, OSError) as exc:  # bad input or --pca file, existing data, disk full / not writable
        return fail(exc)
    print(f"{m['count']} samples ({len(m['sources']) - len(m['skipped'])} images x {m['n_per_image']}, "
          f"{len(m['skipped'])} skipped) -> {os.path.abspath(args.out)}")
    return 0
