"""`fastliif prepare-patches SRC OUT`: cut training images into overlapping square patches
(PNG folder or one HDF5 file), as DIV2K is prepared for fixed-scale SR training."""
import sys


def register(sub):
    p = sub.add_parser("prepare-patches", help="cut training images into overlapping patches (PNG or HDF5)",
                       description="Cut every image under SRC (subfolders included) into CROP x CROP patches "
                                   "every STEP pixels. Defaults follow seed 003 (480 / 200, no border tiles); "
                                   "--step 240 --thresh-size 0 is BasicSR's DIV2K recipe. Patches of SRC/a/x.png "
                                   "are named a__x_s001.png ...; when x.png and x.jpg are both there, "
                                   "x.png_s001.png and x.jpg_s001.png. Files that cannot be decoded are skipped "
                                   "with a warning.")
    p.add_argument("src", metavar="SRC",
                   help="folder of source images, searched recursively (symlinked folders are not followed)")
    p.add_argument("out", metavar="OUT", help="output folder (png) or file (hdf5)")
    p.add_argument("--crop-size", type=int, default=480, help="patch side in pixels (default 480)")
    p.add_argument("--step", type=int, default=200, help="stride between patches (default 200)")
    p.add_argument("--thresh-size", type=int, default=None,
                   help="add a border-flush tile when more than this many pixels remain (default: never)")
    p.add_argument("--format", choices=("png", "hdf5"), default=None,
                   help="output format (default: hdf5 when OUT ends in .h5/.hdf5, else png; hdf5 needs h5py)")
    p.add_argument("--compression", choices=("lzf", "gzip"), default=None, help="HDF5 compression (default none)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder (patches of the same name are replaced, other files kept) "
                        "/ replace the HDF5 file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def fail(msg):
    print(f"fastliif prepare-patches: error: {msg}", file=sys.stderr)
    return 2


def _warn(message, *_, **__):
    # One line per skipped file, not Python's "file:line: UserWarning:" two-liner.
    print(f"fastliif prepare-patches: warning: {message}", file=sys.stderr)


def run(args):
    import os
    import warnings

    from ..data.patches import crop_to_patches

    fmt = args.format
    if fmt is None:
        fmt = "hdf5" if os.path.splitext(args.out)[1].lower() in (".h5", ".hdf5") else "png"
    if args.compression and fmt != "hdf5":
        return fail("--compression applies to --format hdf5 only")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn
            n = crop_to_patches(args.src, args.out, crop_size=args.crop_size, step=args.step,
                                thresh_size=args.thresh_size, fmt=fmt, progress=not args.no_progress,
                                overwrite=args.overwrite, compression=args.compression)
    except (ValueError, ImportError, OSError) as exc:  # bad input, no h5py, disk full / not writable
        return fail(exc)
    print(f"wrote {n} patches to {args.out} ({fmt})")
    return 0
