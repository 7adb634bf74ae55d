"""SRGAN (Ledig et al. 2017): the SRResNet generator, the discriminator and the losses.

``srresnet``: conv 9x9 (in->64) + PReLU; 16 residual blocks (conv 3x3, BN, PReLU, conv 3x3,
BN, + input); conv 3x3 + BN added to the first features; log2(scale) stages of conv 3x3
(64->256), pixel shuffle x2, PReLU; conv 9x9 (64->out). Convs followed by BN have no bias (BN's
shift replaces it); PReLU has one slope per layer. The output is linear (the paper's tanh on
[-1, 1] targets is dropped because inputs and targets are [0, 1]). Parameters at x4:
1,547,350 (x2: 1,399,637; x8: 1,695,063).

``srgan-discriminator``: 8 convs k3 with channels 64,64,128,128,256,256,512,512 and strides
1,2,1,2,... (BN after all but the first, LeakyReLU 0.2), then Dense 1024, LeakyReLU, Dense 1.
It returns logits of shape (N,) (the paper's sigmoid lives in the BCE-with-logits losses). An
adaptive average pool to 6x6 before the dense layers lets any patch size in: at the paper's
96x96 patches the features are already 6x6 and the pool does nothing. Parameters: 23,563,649.
In train mode BatchNorm needs more than one value per channel, so N * (patch/16)^2 > 1.

Losses. ``VGGPerceptualLoss`` builds VGG19's convolutional stack in plain torch and loads a
torchvision-format state_dict from a file the user supplies (never downloads). ``generator_loss``,
``discriminator_loss`` and ``srgan_losses`` give the training terms; the SRGAN objective is
pixel MSE (or the VGG loss) + 1e-3 * adversarial. Without VGG weights the generator loss is
pixel + adversarial. See ``srgan_losses`` for the order of the two optimizer steps.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register

# ----------------------------------------------------------------------------- generator


class _ResidualBlock(nn.Module):
    def __init__(self, nf):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(nf, nf, 3, padding=1, bias=False), nn.BatchNorm2d(nf), nn.PReLU(),
            nn.Conv2d(nf, nf, 3, padding=1, bias=False), nn.BatchNorm2d(nf))

    def forward(self, x):
        return x + self.body(x)


@register("srresnet")
class SRResNet(nn.Module):
    """SRResNet: (N, in_nc, h, w) in [0, 1] -> (N, out_nc, scale*h, scale*w)."""

    SCALES = (2, 4, 8)

    def __init__(self, scale=4, in_nc=3, out_nc=3, nf=64, nb=16):
        super().__init__()
        if scale not in self.SCALES:
            raise ValueError(f"SRResNet supports scales {self.SCALES} (pixel-shuffle x2 stages), got {scale!r}")
        self.scale, self.in_nc = scale, in_nc
        self.head = nn.Sequential(nn.Conv2d(in_nc, nf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[_ResidualBlock(nf) for _ in range(nb)])
        self.body_tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1, bias=False), nn.BatchNorm2d(nf))
        up = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(nf, 4 * nf, 3, padding=1), nn.PixelShuffle(2), nn.PReLU()]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(nf, out_nc, 9, padding=4)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_nc:
            raise ValueError(f"SRResNet expects (N, {self.in_nc}, h, w) input, got shape {tuple(x.shape)}")
        fea = self.head(x)
        fea = fea + self.body_tail(self.body(fea))
        return self.tail(self.upsample(fea))


# ----------------------------------------------------------------------------- discriminator


@register("srgan-discriminator")
class SRGANDiscriminator(nn.Module):
    """VGG-style discriminator; (N, in_nc, H, W) -> logits (N,)."""

    def __init__(self, in_nc=3, nf=64, fc_dim=1024, pool_size=6):
        super().__init__()
        self.in_nc = in_nc
        chans = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf]
        layers, cin = [], in_nc
        for i, cout in enumerate(chans):
            stride = 1 if i % 2 == 0 else 2
            if i == 0:
                layers += [nn.Conv2d(cin, cout, 3, stride, 1)]
            else:
                layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(cin * pool_size * pool_size, fc_dim), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(fc_dim, 1))

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_nc:
            raise ValueError(f"discriminator expects (N, {self.in_nc}, H, W) input, got shape {tuple(x.shape)}")
        return self.classifier(self.pool(self.features(x)).flatten(1)).squeeze(1)


# ----------------------------------------------------------------------------- adversarial terms


def generator_adversarial_loss(fake_logits):
    """-log D(G(x)): BCE-with-logits of the fakes against label 1."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_adversarial_loss(real_logits, fake_logits):
    """-log D(y) - log(1 - D(G(x))): BCE-with-logits, reals against 1, fakes against 0."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


# ----------------------------------------------------------------------------- VGG19 perceptual loss

# torchvision's vgg19().features: (out channels, convs) per block, each block closed by a max pool.
_VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names():
    """Names of torchvision's vgg19().features entries in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for b, (_, n) in enumerate(_VGG19_BLOCKS, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def _vgg19_stack(last):
    """nn.Sequential with torchvision's indices, up to and including layer ``last``."""
    layers, cin = [], 3
    for cout, n in _VGG19_BLOCKS:
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[:last + 1])


def _read_state_dict(path):
    if path is None:
        raise ValueError("VGGPerceptualLoss needs weights_path: a torchvision-format vgg19 state_dict file "
                         "(e.g. torch.save(torchvision.models.vgg19(weights=...).state_dict(), path)); "
                         "nothing is downloaded. Leave the perceptual loss out to train with pixel + "
                         "adversarial loss only.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VGG19 weights file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-torch files
        raise ValueError(f"could not read VGG19 weights from {path}: {e}") from e
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} holds a {type(sd).__name__}, not a vgg19 state_dict")
    return sd


class VGGPerceptualLoss(nn.Module):
    """Distance between VGG19 features of SR and HR images (SRGAN's VGG54 at ``relu5_4``).

    ``weights_path``: a file with a torchvision vgg19 state_dict (keys ``features.<i>.weight`` /
    ``.bias``; ``classifier.*`` is ignored) or the state_dict of ``vgg19().features`` alone (keys
    ``<i>.weight``). Only the convolutions up to ``layer`` are needed. Inputs are (N, 3, H, W) RGB
    in [0, 1]; they are normalised with the ImageNet mean/std torchvision's weights expect.
    ``criterion``: 'mse' (the paper) or 'l1'. The VGG weights are frozen; gradients flow to ``sr``.
    """

    def __init__(self, weights_path, layer="relu5_4", criterion="mse", normalize=True):
        super().__init__()
        names = vgg19_layer_names()
        if layer not in names:
            raise ValueError(f"unknown VGG19 layer {layer!r}; choose from {', '.join(names)}")
        if criterion not in ("mse", "l1"):
            raise ValueError(f"criterion must be 'mse' or 'l1', got {criterion!r}")
        sd = _read_state_dict(weights_path)
        self.features = _vgg19_stack(names.index(layer))
        self._load(sd, weights_path)
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.layer, self.criterion, self.normalize = layer, criterion, normalize
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _load(self, sd, path):
        prefix = "features." if any(k.startswith("features.") for k in sd) else ""
        own = self.features.state_dict()
        picked = {}
        for key, param in own.items():
            src = prefix + key
            if src not in sd:
                raise ValueError(f"{path} does not fit vgg19: key {src!r} is missing "
                                 f"(expected a torchvision vgg19 state_dict)")
            if tuple(sd[src].shape) != tuple(param.shape):
                raise ValueError(f"{path} does not fit vgg19: {src!r} has shape {tuple(sd[src].shape)}, "
                                 f"expected {tuple(param.shape)}")
            picked[key] = sd[src]
        self.features.load_state_dict(picked)

    def extract(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG perceptual loss expects (N, 3, H, W) RGB input, got shape {tuple(x.shape)}")
        if self.normalize:
            x = (x - self.mean) / self.std
        return self.features(x)

    def forward(self, sr, hr):
        if sr.shape != hr.shape:
            raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
        with torch.no_grad():
            target = self.extract(hr)
        feat = self.extract(sr)
        return F.mse_loss(feat, target) if self.criterion == "mse" else F.l1_loss(feat, target)


# ----------------------------------------------------------------------------- training terms


def generator_loss(sr, hr, discriminator, perceptual=None, pixel="mse", pixel_weight=1.0,
                   perceptual_weight=0.006, adv_weight=1e-3):
    """Generator objective and its terms (floats, for logging).

    ``pixel_weight * pixel(sr, hr) + perceptual_weight * perceptual(sr, hr) + adv_weight * adv``;
    the perceptual term is skipped when ``perceptual`` is None. 0.006 ~ 1/12.75^2 is the paper's
    rescaling of VGG features, for MSE on [0, 1] images; 1e-3 is the paper's adversarial weight.
    Gradients reach ``sr`` through all terms (and the discriminator's parameters through the
    adversarial one: zero the discriminator's gradients before its own backward).
    """
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if pixel not in ("mse", "l1"):
        raise ValueError(f"pixel loss must be 'mse' or 'l1', got {pixel!r}")
    pix = F.mse_loss(sr, hr) if pixel == "mse" else F.l1_loss(sr, hr)
    adv = generator_adversarial_loss(discriminator(sr))
    total = pixel_weight * pix + adv_weight * adv
    terms = {"pixel": pix.item(), "adversarial": adv.item()}
    if perceptual is not None:
        per = perceptual(sr, hr)
        total = total + perceptual_weight * per
        terms["perceptual"] = per.item()
    terms["g_loss"] = total.item()
    return total, terms


def discriminator_loss(sr, hr, discriminator):
    """Discriminator objective on detached fakes ``sr`` and reals ``hr``, and its terms."""
    real, fake = discriminator(hr), discriminator(sr.detach())
    loss = discriminator_adversarial_loss(real, fake)
    terms = {"d_loss": loss.item(), "d_real": torch.sigmoid(real).mean().item(),
             "d_fake": torch.sigmoid(fake).mean().item()}
    return loss, terms


def srgan_losses(sr, hr, discriminator, perceptual=None, **weights):
    """Both SRGAN losses for one batch: ``(g_loss, d_loss, terms)``.

    ``weights`` go to :func:`generator_loss` (pixel, pixel_weight, perceptual_weight, adv_weight).
    Step the generator first, then the discriminator: its optimizer step changes weights the
    generator's graph still needs, so the other order fails in backward::

        sr = generator(lr)
        g_loss, d_loss, terms = srgan_losses(sr, hr, discriminator, perceptual)
        opt_g.zero_grad(); g_loss.backward(); opt_g.step()
        opt_d.zero_grad(); d_loss.backward(); opt_d.step()
    """
    g_loss, g_terms = generator_loss(sr, hr, discriminator, perceptual, **weights)
    d_loss, d_terms = discriminator_loss(sr, hr, discriminator)
    return g_loss, d_loss, {**g_terms, **d_terms}
