"""Training: YAML configs in the official LIIF layout, losses, the loop (Adam, MultiStepLR,
checkpoints in the official format, resume, validation PSNR, AMP, DDP via torchrun)."""
from .config import load_config
from .loop import train

__all__ = ["load_config", "train"]
