"""`fastliif prepare-patches SRC OUT`: cut training images into overlapping square patches
(PNG folder or one HDF5 file), as DIV2K is prepared for fixed-scale SR training."""


def register(sub):
    p = sub.add_parser("prepare-patches", help="cut training images into overlapping patches (PNG or HDF5)",
                       description="Cut every image of SRC into CROP x CROP patches every STEP pixels. "
                                   "Defaults follow seed 003 (480 / 200, no border tiles); "
                                   "--step 240 --thresh-size 0 is BasicSR's DIV2K recipe.")
    p.add_argument("src", metavar="SRC", help="folder of source images")
    p.add_argument("out", metavar="OUT", help="output folder (png) or file (hdf5)")
    p.add_argument("--crop-size", type=int, default=480, help="patch side in pixels (default 480)")
    p.add_argument("--step", type=int, default=200, help="stride between patches (default 200)")
    p.add_argument("--thresh-size", type=int, default=None,
                   help="add a border-flush tile when more than this many pixels remain (default: never)")
    p.add_argument("--format", choices=("png", "hdf5"), default=None,
                   help="output format (default: hdf5 when OUT ends in .h5/.hdf5, else png)")
    p.add_argument("--compression", choices=("lzf", "gzip"), default=None, help="HDF5 compression (default none)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder / replace the file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    import os
    import sys

    from ..data.patches import crop_to_patches

    fmt = args.format
    if fmt is None:
        fmt = "hdf5" if os.path.splitext(args.out)[1].lower() in (".h5", ".hdf5") else "png"
    if args.compression and fmt != "hdf5":
        print("prepare-patches: --compression applies to --format hdf5 only", file=sys.stderr)
        return 2
    try:
        n = crop_to_patches(args.src, args.out, crop_size=args.crop_size, step=args.step,
                            thresh_size=args.thresh_size, fmt=fmt, progress=not args.no_progress,
                            overwrite=args.overwrite, compression=args.compression)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"prepare-patches: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} patches to {args.out} ({fmt})")
    return 0
