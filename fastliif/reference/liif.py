"""The reference LIIF (Chen et al. 2021): the oracle the fused kernels are checked against.

Same arithmetic as the official ``models/liif.py``: 3x3 feature unfolding, four shifted
nearest samples (grid_sample, round half to even), relative coordinates from the unshifted
coordinate, the optional cell, an MLP per sample and the area-weighted ensemble in which
each corner is weighted by the area of the diagonally opposite one. The only departure:
the grid of cell centres follows ``feat``'s device and dtype instead of ``.cuda()``, so
the oracle runs on CPU and in float64.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import make, register
from .coord import make_coord


def imnet_in_dim(feat_dim, feat_unfold, cell_decode):
    return feat_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)


def sample_nearest(feat, coord):
    """feat (B, C, h, w) at coord (B, Q, 2) [row, col] -> (B, Q, C), grid_sample nearest."""
    grid = coord.flip(-1).unsqueeze(1)
    return F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0, :].permute(0, 2, 1)


def query_rgb_reference(feat, coord, cell, imnet, feat_unfold=True, local_ensemble=True, cell_decode=True):
    """The official query_rgb as a function of the feature map and the decoder."""
    if imnet is None:
        return sample_nearest(feat, coord)
    h, w = feat.shape[-2:]
    if feat_unfold:
        feat = F.unfold(feat, 3, padding=1).view(feat.shape[0], feat.shape[1] * 9, h, w)
    if local_ensemble:
        shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], 1e-6
    else:
        shifts, eps = [(0, 0)], 0
    rx, ry = 2 / h / 2, 2 / w / 2  # half a cell, in [-1, 1] units
    centres = make_coord((h, w), flatten=False).to(device=feat.device, dtype=feat.dtype)
    centres = centres.permute(2, 0, 1).unsqueeze(0).expand(feat.shape[0], 2, h, w)

    preds, areas = [], []
    for vx, vy in shifts:
        shifted = coord.clone()
        shifted[:, :, 0] += vx * rx + eps
        shifted[:, :, 1] += vy * ry + eps
        shifted.clamp_(-1 + 1e-6, 1 - 1e-6)
        q_feat = sample_nearest(feat, shifted)
        q_coord = sample_nearest(centres, shifted)
        rel_coord = coord - q_coord
        rel_coord[:, :, 0] *= h
        rel_coord[:, :, 1] *= w
        inp = torch.cat([q_feat, rel_coord], dim=-1)
        if cell_decode:
            rel_cell = cell.clone()
            rel_cell[:, :, 0] *= h
            rel_cell[:, :, 1] *= w
            inp = torch.cat([inp, rel_cell], dim=-1)
        bs, q = coord.shape[:2]
        preds.append(imnet(inp.view(bs * q, -1)).view(bs, q, -1))
        areas.append(torch.abs(rel_coord[:, :, 0] * rel_coord[:, :, 1]) + 1e-9)

    total = torch.stack(areas).sum(dim=0)
    if local_ensemble:  # each corner takes the area of the diagonally opposite one
        areas = areas[::-1]
    ret = 0
    for pred, area in zip(preds, areas):
        ret = ret + pred * (area / total).unsqueeze(-1)
    return ret


@register("liif-reference")
class LIIF(nn.Module):
    """Reference LIIF with the official constructor and state_dict keys."""

    def __init__(self, encoder_spec, imnet_spec=None, local_ensemble=True, feat_unfold=True, cell_decode=True):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder_spec, self.imnet_spec = encoder_spec, imnet_spec  # for save_checkpoint
        self.encoder = make(encoder_spec)
        if imnet_spec is not None:
            in_dim = imnet_in_dim(self.encoder.out_dim, feat_unfold, cell_decode)
            self.imnet = make(imnet_spec, args={"in_dim": in_dim})
        else:
            self.imnet = None

    def gen_feat(self, inp):
        self.feat = self.encoder(inp)
        return self.feat

    def query_rgb(self, coord, cell=None):
        return query_rgb_reference(self.feat, coord, cell, self.imnet,
                                   self.feat_unfold, self.local_ensemble, self.cell_decode)

    def forward(self, inp, coord, cell):
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)


def batched_predict(model, inp, coord, cell, bsize):
    """The official test-time helper: encode once, query in chunks of ``bsize``, no grad."""
    with torch.no_grad():
        model.gen_feat(inp)
        n = coord.shape[1]
        preds = []
        for lo in range(0, n, bsize):
            hi = min(lo + bsize, n)
            preds.append(model.query_rgb(coord[:, lo:hi, :], cell[:, lo:hi, :]))
        return torch.cat(preds, dim=1)
