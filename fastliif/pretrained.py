"""The bundled pretrained LIIF and the demo sample image (files in ``fastliif/assets``).

    model = fastliif.pretrained.load_pretrained()                 # fused LIIF, eval mode, on CPU
    model = load_pretrained("my-liif.pth", backend="reference")   # the oracle module, same weights
"""
import os

from .checkpoint import load_checkpoint

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEFAULT_CHECKPOINT = os.path.join(ASSETS, "liif-edsr-baseline.pth")
SAMPLE_IMAGE = os.path.join(ASSETS, "sample.png")

BACKENDS = ("auto", "cpu", "torch", "triton", "cuda", "reference")


class PretrainedNotFoundError(FileNotFoundError):
    """The bundled checkpoint is not in this installation."""


def sample_image_path():
    """The bundled 192x192 demo image (a crop of scikit-image's ``chelsea``, CC0; see assets/README.md)."""
    return SAMPLE_IMAGE


def load_pretrained(path=None, backend="auto", device="cpu"):
    """Load a LIIF checkpoint (official format) for inference: eval mode, on ``device``.

    ``path=None`` loads the bundled model (``DEFAULT_CHECKPOINT``). ``backend`` is the fused
    query's backend ("auto" | "cpu" | "torch" | "triton" | "cuda"), or "reference" for the
    pure-PyTorch oracle module (``fastliif.reference.LIIF``) with the same weights.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if path is None:
        path = DEFAULT_CHECKPOINT
        if not os.path.isfile(path):
            raise PretrainedNotFoundError(
                f"the bundled model {path} is not in this installation (no trained weights shipped yet); "
                "pass a LIIF checkpoint in the official format with --model CKPT "
                "(Python: load_pretrained(path=...))")
    model = load_checkpoint(path, backend="auto" if backend == "reference" else backend)
    if backend == "reference":
        model = to_reference(model)
    return model.to(device).eval()


def to_reference(model):
    """The oracle module (``fastliif.reference.LIIF``) with a fused LIIF's configuration and weights."""
    from .reference.liif import LIIF as ReferenceLIIF

    ref = ReferenceLIIF(model.encoder_spec, model.imnet_spec, model.local_ensemble, model.feat_unfold,
                        model.cell_decode)
    ref.load_state_dict(model.state_dict())
    return ref.to(next(model.parameters()).device).train(model.training)


__all__ = ["DEFAULT_CHECKPOINT", "SAMPLE_IMAGE", "PretrainedNotFoundError", "load_pretrained", "sample_image_path",
           "to_reference"]
