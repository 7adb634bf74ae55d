"""Drop-in fused LIIF: the official constructor, state_dict keys and methods."""
import torch.nn as nn

from ..models import register
from ..ops import BACKENDS, liif_query
from ..reference.liif import LIIF as ReferenceLIIF
from ..reference.liif import sample_nearest


def check_options(who, backend, **flags):
    """Constructor checks shared by the fused modules: a known backend, boolean flags."""
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"{who}: backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{who}: {name} must be True or False, got {value!r}")


def mlp_linears(imnet):
    """The Linear layers of an official-structure MLP (``imnet.layers`` = Linear, ReLU, ..., Linear).

    Returns None when ``imnet`` does not have exactly that structure.
    """
    layers = getattr(imnet, "layers", None)
    if not isinstance(layers, nn.Sequential) or len(layers) % 2 == 0:
        return None
    linears = []
    for i, layer in enumerate(layers):
        if i % 2 == 0 and isinstance(layer, nn.Linear):
            linears.append(layer)
        elif i % 2 == 1 and isinstance(layer, nn.ReLU):
            continue
        else:
            return None
    return linears


def fused_query_rgb(module, coord, cell=None, backend="auto"):
    """query_rgb of any module with the official LIIF structure, through the fused op."""
    feat = module.feat
    if module.imnet is None:
        return sample_nearest(feat, coord)
    linears = mlp_linears(module.imnet)
    if linears is None:
        raise TypeError("fused query_rgb needs imnet.layers = Sequential(Linear, ReLU, ..., Linear)")
    weights = [layer.weight for layer in linears]
    biases = [layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.out_features)
              for layer in linears]
    return liif_query(feat, coord, cell, weights, biases, feat_unfold=module.feat_unfold,
                      local_ensemble=module.local_ensemble, cell_decode=module.cell_decode, backend=backend)


@register("liif")
class LIIF(ReferenceLIIF):
    """LIIF whose query runs the fused kernels.

    ``LIIF(encoder_spec, imnet_spec=None, local_ensemble=True, feat_unfold=True,
    cell_decode=True, backend="auto")``; ``encoder_spec`` may also be a registered name
    such as ``"edsr-baseline"`` (LIIF's feature setting, no upsampling, is then applied).
    Parameters, buffers and state_dict keys are those of the official model.
    """

    def __init__(self, encoder_spec="edsr-baseline", imnet_spec=None, local_ensemble=True, feat_unfold=True,
                 cell_decode=True, backend="auto", encoder=None):
        check_options("LIIF", backend, local_ensemble=local_ensemble, feat_unfold=feat_unfold,
                      cell_decode=cell_decode)
        if encoder is not None:  # fastliif.nn.LIIF(encoder="edsr-baseline")
            encoder_spec = encoder
        if isinstance(encoder_spec, str):
            encoder_spec = {"name": encoder_spec, "args": {"no_upsampling": True}}
            if imnet_spec is None:
                imnet_spec = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}}
        super().__init__(encoder_spec, imnet_spec, local_ensemble, feat_unfold, cell_decode)
        self.backend = backend

    def query_rgb(self, coord, cell=None):
        return fused_query_rgb(self, coord, cell, backend=self.backend)
