"""Coordinate helpers with the official LIIF semantics (utils.make_coord / to_pixel_samples)."""
import torch


def make_coord(shape, ranges=None, flatten=True):
    """Coordinates of the cell centres of a grid of ``shape`` over [-1, 1] per axis.

    Computed in float32 exactly as the official code does (the fused kernels reproduce this
    arithmetic bit for bit). Returns (*shape, ndim), or (prod(shape), ndim) when ``flatten``.
    """
    seqs = []
    for i, n in enumerate(shape):
        v0, v1 = (-1, 1) if ranges is None else ranges[i]
        r = (v1 - v0) / (2 * n)
        seqs.append(v0 + r + (2 * r) * torch.arange(n).float())
    ret = torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1)
    if flatten:
        ret = ret.view(-1, ret.shape[-1])
    return ret


def to_pixel_samples(img):
    """(C, H, W) image -> (H*W, 2) centre coordinates and (H*W, C) values."""
    coord = make_coord(img.shape[-2:])
    values = img.reshape(img.shape[0], -1).permute(1, 0)
    return coord, values


def make_cell(coord, shape):
    """Cell size (2/H, 2/W) for every query of an output of ``shape`` = (H, W)."""
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / shape[0]
    cell[..., 1] *= 2 / shape[1]
    return cell
