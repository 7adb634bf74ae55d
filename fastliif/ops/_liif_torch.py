"""`torch` backend of liif_query: the fused algorithm in plain PyTorch, chunked over queries.

Works on any device and dtype. The projection is gathered per corner (no unfolded tensor),
the ensemble is applied before the last layer, and queries are processed in chunks whose
widest activation has ``budget`` elements (peak memory is a small multiple of that: the
gathered rows, the layer input and output and the weighted mix coexist). Under autograd
each chunk is checkpointed: backward recomputes it instead of keeping Q x hidden
activations alive.
"""
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..reference.coord import make_coord

ACTIVATION_BUDGET = 1 << 23  # elements of the widest per-chunk activation (32 MiB in fp32)


def corner_geometry(coord, h, w, local_ensemble):
    """Sample cells of each query exactly as the official query_rgb picks them.

    Returns ``cells`` (T, B, Q) flat indices into an (h*w) map, ``rel`` (T, B, Q, 2)
    relative coordinates in cell units, and ``weights`` (T, B, Q) ensemble weights,
    T = 4 with the local ensemble else 1. The indices come from grid_sample itself on a
    map of cell indices, so ties round exactly as the reference does on every device.
    Reduced-precision coordinates are handled in float32.
    """
    gdt = coord.dtype if coord.dtype in (torch.float32, torch.float64) else torch.float32
    c = coord.to(gdt)
    B = c.shape[0]
    dev = c.device
    ij = torch.stack(torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij"))
    index_map = ij.to(gdt).unsqueeze(0).expand(B, 2, h, w)
    centres = make_coord((h, w), flatten=False).to(device=dev, dtype=gdt).view(h * w, 2)
    scale = torch.tensor([h, w], device=dev, dtype=gdt)
    if local_ensemble:
        shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], 1e-6
    else:
        shifts, eps = [(0, 0)], 0
    cells, rels, areas = [], [], []
    for vx, vy in shifts:
        shifted = c.clone()
        shifted[..., 0] += vx * (2 / h / 2) + eps
        shifted[..., 1] += vy * (2 / w / 2) + eps
        shifted.clamp_(-1 + 1e-6, 1 - 1e-6)
        picked = F.grid_sample(index_map, shifted.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
        iy, ix = picked[:, 0, 0].long(), picked[:, 1, 0].long()
        cell_index = iy * w + ix
        rel = (c - centres[cell_index]) * scale
        cells.append(cell_index)
        rels.append(rel)
        areas.append(torch.abs(rel[..., 0] * rel[..., 1]) + 1e-9)
    total = torch.stack(areas).sum(dim=0)
    if local_ensemble:
        areas = areas[::-1]
    weights = torch.stack([a / total for a in areas])
    return torch.stack(cells), torch.stack(rels), weights


def _query_chunk(proj_rows, coord, cell, w_rel, b1, weights, biases, h, w, local_ensemble, cell_decode):
    B = coord.shape[0]
    cells, rel, wts = corner_geometry(coord, h, w, local_ensemble)
    rows = cells + (torch.arange(B, device=coord.device) * (h * w)).view(1, B, 1)
    dt = proj_rows.dtype
    feats = rel.to(dt)
    if cell_decode:
        rel_cell = cell.to(dt) * torch.tensor([h, w], device=cell.device, dtype=dt)
        feats = torch.cat([feats, rel_cell.unsqueeze(0).expand(feats.shape[0], -1, -1, -1)], dim=-1)
    # index_select (not advanced indexing): its backward is an index_add, fast with repeats
    gathered = proj_rows.index_select(0, rows.reshape(-1)).view(*rows.shape, proj_rows.shape[1])
    x = gathered + F.linear(feats, w_rel, b1)  # (T, B, q, N1)
    if not weights:
        return (x * wts.to(dt).unsqueeze(-1)).sum(dim=0)
    x = torch.relu(x)
    for W, b in zip(weights[:-1], biases[:-1]):
        x = torch.relu(F.linear(x, W, b))
    mixed = (x * wts.to(dt).unsqueeze(-1)).sum(dim=0)
    return F.linear(mixed, weights[-1], biases[-1])


def liif_query_torch(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode,
                     budget=ACTIVATION_BUDGET):
    """proj (B, h, w, N1) -> (B, Q, out_dim); arguments as torch.ops.fastliif.liif_query_core."""
    B, h, w, n1 = proj.shape
    Q = coord.shape[1]
    proj_rows = proj.reshape(B * h * w, n1)
    widest = max([n1] + [W.shape[0] for W in weights])
    corners = 4 if local_ensemble else 1
    chunk = max(1, budget // max(1, B * corners * widest))
    tensors = [proj_rows, w_rel, b1, *weights, *biases]
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    weights, biases = list(weights), list(biases)
    outs = []
    for lo in range(0, max(Q, 1), chunk):
        args = (coord[:, lo:lo + chunk], None if cell is None else cell[:, lo:lo + chunk])
        if recompute:
            outs.append(checkpoint(_query_chunk, proj_rows, *args, w_rel, b1, weights, biases, h, w,
                                   local_ensemble, cell_decode, use_reentrant=False))
        else:
            outs.append(_query_chunk(proj_rows, *args, w_rel, b1, weights, biases, h, w,
                                     local_ensemble, cell_decode))
    return torch.cat(outs, dim=1)
