"""Small forward + backward of the C++/CUDA kernels (csrc/cuda) on the GPU, for compute-sanitizer:
ragged last tiles, coordinates outside [-1, 1], every precision, a one-layer decoder, and
dynamic_conv in both modes with k = 1, 3, 7 and s = 1..3.

    compute-sanitizer --tool memcheck  python3 scripts/sanitize_cuda.py
    compute-sanitizer --tool racecheck python3 scripts/sanitize_cuda.py
"""
import torch

import fastliif
from fastliif.reference import MLP


def liif_cases():
    for flags, hidden in [((True, True, True), [64, 64, 64]), ((False, False, False), [24, 40]),
                          ((True, False, True), [])]:
        fu, le, cd = flags
        C = 5
        mlp = MLP(C * (9 if fu else 1) + 2 + (2 if cd else 0), 3, hidden).cuda()
        weights = [m.weight for m in mlp.layers[0::2]]
        biases = [m.bias for m in mlp.layers[0::2]]
        feat = torch.randn(2, C, 7, 5, device="cuda", requires_grad=True)
        coord = torch.rand(2, 333, 2, device="cuda") * 2.4 - 1.2  # ragged last tile, outside coords
        cell = torch.rand(2, 333, 2, device="cuda") * 0.2
        for precision in ("ieee", "tf32", "bf16", "fp16"):
            out = fastliif.ops.liif_query(feat, coord, cell, weights, biases, feat_unfold=fu, local_ensemble=le,
                                          cell_decode=cd, backend="cuda", precision=precision)
            out.square().mean().backward()


def dconv_cases():
    for mode in ("shared", "per_channel"):
        for k, s in ((1, 1), (3, 2), (7, 3)):
            C = 5
            kc = (C if mode == "per_channel" else 1) * k * k * s * s
            image = torch.randn(2, C, 13, 37, device="cuda", requires_grad=True)
            kernel = torch.randn(2, kc, 13, 37, device="cuda", requires_grad=True)
            out = fastliif.ops.dynamic_conv(image, kernel, kernel_size=k, scale=s, mode=mode, backend="cuda")
            out.square().mean().backward()


def main():
    assert torch.cuda.is_available(), "needs a CUDA device"
    torch.manual_seed(0)
    liif_cases()
    dconv_cases()
    torch.cuda.synchronize()
    print("sanitize run finished")


if __name__ == "__main__":
    main()
