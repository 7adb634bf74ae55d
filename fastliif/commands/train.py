"""`fastliif train CONFIG.yaml`: train a model (single process, or DDP under torchrun)."""
import os
import sys


def register(sub):
    p = sub.add_parser("train", help="train a model from a YAML config (official LIIF layout)",
                       description="Train from a YAML config. Multi-GPU / multi-node: launch with "
                                   "`torchrun --nproc_per_node N -m fastliif train CONFIG`.")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--save-dir", help="output folder (default: save/<config name>)")
    p.add_argument("--resume", help="checkpoint to resume from (e.g. save/x/epoch-last.pth)")
    p.add_argument("--backend", choices=["auto", "cpu", "torch", "triton", "cuda", "reference"],
                   help="query / dynamic-conv backend; 'reference' trains the plain-PyTorch model")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16/fp16 autocast)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--epochs", type=int, help="override epoch_max")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train_dataset.batch_size=8 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args):
    from ..train import load_config, train
    from ..train.config import ConfigError
    overrides = list(args.set)
    if args.epochs is not None:
        overrides.append(f"epoch_max={args.epochs}")
    if args.resume:
        overrides.append(f"resume={args.resume}")
    if args.backend:
        overrides.append(f"backend={args.backend}")
    if args.amp:
        overrides.append("amp=true")
    save_dir = args.save_dir or os.path.join("save", os.path.splitext(os.path.basename(args.config))[0])
    try:
        config = load_config(args.config, overrides)
        history = train(config, save_dir, device=args.device, progress=not args.quiet)
    except (ConfigError, OSError) as exc:  # bad config or setup, unreadable files, disk full: one line
        print(f"fastliif train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # the run diverged (NaN/inf loss): not bad input, still one line
        print(f"fastliif train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if history and int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoints and history in {save_dir}")
    return 0
