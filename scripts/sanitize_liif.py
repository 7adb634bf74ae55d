"""Small forward + backward of every fused LIIF backend on the GPU, for compute-sanitizer.

    compute-sanitizer --tool memcheck python3 scripts/sanitize_liif.py
"""
import torch

import fastliif
from fastliif.reference import MLP


def main():
    assert torch.cuda.is_available(), "needs a CUDA device"
    torch.manual_seed(0)
    for flags in [(True, True, True), (False, False, False), (True, False, True)]:
        fu, le, cd = flags
        C = 5
        mlp = MLP(C * (9 if fu else 1) + 2 + (2 if cd else 0), 3, [64, 64, 64]).cuda()
        weights = [m.weight for m in mlp.layers[0::2]]
        biases = [m.bias for m in mlp.layers[0::2]]
        feat = torch.randn(2, C, 7, 5, device="cuda", requires_grad=True)
        coord = torch.rand(2, 333, 2, device="cuda") * 2.4 - 1.2   # ragged last tile, outside coords
        cell = torch.rand(2, 333, 2, device="cuda") * 0.2
        for precision in ("ieee", "tf32", "bf16"):
            out = fastliif.ops.liif_query(feat, coord, cell, weights, biases, feat_unfold=fu, local_ensemble=le,
                                          cell_decode=cd, backend="triton", precision=precision)
            out.square().mean().backward()
    torch.cuda.synchronize()
    print("sanitize run finished")


if __name__ == "__main__":
    main()
