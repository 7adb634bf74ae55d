"""`fastliif eval`: PSNR/SSIM of a checkpoint on a folder of HR images, per scale, vs bicubic."""
import argparse
import importlib
import sys

BACKENDS = ("auto", "cpu", "torch", "triton", "reference")


def _scales(text):
    from ..evaluate import parse_scales
    try:
        return parse_scales(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub):
    p = sub.add_parser("eval", help="PSNR/SSIM of a checkpoint on HR images, per scale, with bicubic")
    p.add_argument("--model", help="checkpoint {'model': {'name', 'args', 'sd'}}; default: the bundled LIIF")
    p.add_argument("--data", required=True, help="folder of HR images, or samples:NAME,NAME,... for photographs bundled with "
                        "scikit-image / matplotlib (e.g. samples:chelsea,grace_hopper,camera)")
    p.add_argument("--scales", type=_scales, default=[2, 3, 4], help="comma-separated scales (default 2,3,4)")
    p.add_argument("--protocol", choices=("benchmark", "div2k"), default="benchmark",
                   help="benchmark: Y channel, shave scale; div2k: RGB, shave scale+6 (default benchmark)")
    p.add_argument("--lr-data", help="paired LR folder (X<scale>/ subfolders, names matched) instead of resizing")
    p.add_argument("--resize", choices=("matlab", "pil", "torch"), default="matlab",
                   help="how LR is made and bicubic upscales (default matlab imresize)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="LIIF query backend; 'reference' runs the pure-PyTorch oracle (default auto)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto: cuda when available, "
                                                     "cpu for --backend cpu)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--save-dir", help="write SR images as DIR/x<scale>/<name>.png")
    p.add_argument("--json", help="write the numbers (means and per image) to this JSON file")
    p.add_argument("--plot", help="write a PNG of PSNR per scale (model vs bicubic, per image dots)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda args: run(p, args))


def _check_plot(parser, path):
    """--plot needs matplotlib and a PNG path: say so before any work."""
    from ..data.io import output_format
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        parser.error("--plot needs matplotlib (pip install matplotlib)")
    try:
        if output_format(path)[0] != "PNG":
            parser.error(f"--plot writes a PNG: give a .png path, got {path}")
    except ValueError as exc:
        parser.error(str(exc))


def run(parser, args):
    from ..atomic import write_json
    from ..evaluate import (checkpoint_data_norm, evaluate, format_table, load_images, load_lr_images,
                            load_model_for_eval)
    from ..upscale import parse_device, resolve_backend

    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.plot:
        _check_plot(parser, args.plot)
    try:
        device = parse_device(args.device, args.backend)
        resolve_backend(args.backend, device)
        images = load_images(args.data, limit=args.limit)
        lr_images = None
        if args.lr_data is not None:
            lr_images = load_lr_images(args.lr_data, [name for name, _ in images], args.scales)
        model = load_model_for_eval(args.model, backend=args.backend)
        data_norm = checkpoint_data_norm(args.model)  # a fastliif-trained model's own; None: by model kind
    except (FileNotFoundError, ValueError, ImportError) as exc:
        parser.error(str(exc))
    model_name = args.model or "bundled model"
    try:
        result = evaluate(model, images, args.scales, args.protocol, resize=args.resize, lr_images=lr_images,
                          device=device, save_dir=args.save_dir, data_norm=data_norm,
                          progress=not args.no_progress)
    except (ValueError, TypeError, RuntimeError) as exc:  # e.g. image too small, backend unavailable
        print(f"fastliif eval: error: {exc}", file=sys.stderr)
        return 1
    print(f"{model_name} on {args.data} ({len(images)} images, protocol {args.protocol}, "
          f"LR by {'--lr-data' if lr_images is not None else args.resize}, backend {args.backend}, {device})")
    print(format_table(result))
    try:
        if args.plot:
            from ..evaluate import plot_result
            plot_result(result, args.plot)
            print(f"plot written to {args.plot}")
        if args.json:
            result.update(checkpoint=model_name, data=args.data, backend=args.backend, device=str(device))
            write_json(args.json, result)
    except OSError as exc:  # disk full, read-only folder: the numbers above are printed already
        print(f"fastliif eval: error: {exc}", file=sys.stderr)
        return 2
    return 0
