"""Start a LIIF at bilinear interpolation of its input (config key ``init: bilinear``).

A LIIF predicts absolute colours, so a freshly initialised one must first learn to reproduce
its input before it can add detail; on a CPU budget that first phase is most of the run, and
its leftovers are the slowly varying level error studied in docs/grid_study.md. This init
keeps the official architecture and checkpoint format (the file still loads in the official
code and means the same there) and only chooses different starting weights:

- encoder: 3 of the feature channels carry the input RGB (the first conv's centre tap is the
  identity for them; the conv that closes the skip connection writes zeros into them);
- decoder: 6 units per hidden layer carry +RGB and -RGB of the centre cell of the 3x3 unfolded
  feature (ReLU(x) - ReLU(-x) = x), and the output layer reads only them.

Each of the four corners then predicts its own cell's colour, and LIIF's area-weighted ensemble
of four per-cell constants *is* bilinear interpolation between cell centres. Every other weight
keeps PyTorch's default init except the output layer's, which starts at zero (the usual
zero-init of a residual branch), so training starts from bilinear and learns what to add.
The slices are overwritten in place: the RNG stream, hence the seed-determinism, is unchanged.
"""
import torch
import torch.nn as nn

from .config import ConfigError

INITS = ("default", "bilinear")


def _linears(imnet):
    return [m for m in imnet.modules() if isinstance(m, nn.Linear)]


def _encoder_convs(encoder):
    """(first conv, conv that closes the global skip) for the encoders LIIF is used with."""
    if hasattr(encoder, "head") and hasattr(encoder, "body"):  # EDSR / EDSR-baseline
        return encoder.head[0], encoder.body[-1]
    if hasattr(encoder, "SFENet1") and hasattr(encoder, "GFF"):  # RDN
        return encoder.SFENet1, encoder.GFF[-1]
    raise ConfigError(f"init: bilinear needs an EDSR or RDN encoder, got {type(encoder).__name__}")


@torch.no_grad()
def init_bilinear(model):
    """Overwrite the slices of ``model`` (a LIIF) that make it start as bilinear interpolation."""
    if getattr(model, "imnet", None) is None or not hasattr(model, "encoder"):
        raise ConfigError("init: bilinear needs a LIIF with a decoder (imnet)")
    if not getattr(model, "local_ensemble", True):
        raise ConfigError("init: bilinear needs local_ensemble: true (the ensemble is the interpolation)")
    first, last = _encoder_convs(model.encoder)
    colors, kh, kw = first.in_channels, first.kernel_size[0], first.kernel_size[1]
    if first.out_channels < colors:
        raise ConfigError(f"init: bilinear needs at least {colors} encoder features, got {first.out_channels}")
    first.weight[:colors].zero_()
    first.bias[:colors].zero_()
    for c in range(colors):
        first.weight[c, c, kh // 2, kw // 2] = 1.0
    last.weight[:colors].zero_()
    if last.bias is not None:
        last.bias[:colors].zero_()

    linears = _linears(model.imnet)
    if len(linears) < 2 or min(l.out_features for l in linears[:-1]) < 2 * colors:
        raise ConfigError(f"init: bilinear needs a decoder with hidden layers at least {2 * colors} wide")
    if linears[-1].out_features != colors:
        raise ConfigError(f"init: bilinear needs out_dim {colors}, got {linears[-1].out_features}")
    taps = 9 if getattr(model, "feat_unfold", True) else 1
    centre = taps // 2  # F.unfold orders the unfolded channels as c * 9 + tap
    head = linears[0]
    head.weight[:2 * colors].zero_()
    head.bias[:2 * colors].zero_()
    for c in range(colors):
        head.weight[2 * c, c * taps + centre] = 1.0
        head.weight[2 * c + 1, c * taps + centre] = -1.0
    for hidden in linears[1:-1]:
        hidden.weight[:2 * colors].zero_()
        hidden.bias[:2 * colors].zero_()
        for i in range(2 * colors):
            hidden.weight[i, i] = 1.0
    out = linears[-1]
    out.weight.zero_()
    out.bias.zero_()
    for c in range(colors):
        out.weight[c, 2 * c] = 1.0
        out.weight[c, 2 * c + 1] = -1.0
    return model


def apply_init(model, name):
    if name in (None, "default"):
        return model
    if name == "bilinear":
        return init_bilinear(model)
    raise ConfigError(f"init must be one of {INITS}, got {name!r}")
