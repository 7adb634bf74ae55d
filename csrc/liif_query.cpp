// Schema of the fused LIIF query. Kernels register per device in csrc/cpu and csrc/cuda;
// fake (meta) kernels and autograd are registered from Python (fastliif/ops/_library.py).
// This file owns TORCH_LIBRARY(fastliif); the other ops add TORCH_LIBRARY_FRAGMENTs.
#include <torch/library.h>

TORCH_LIBRARY(fastliif, m) {
  // proj: (B, h, w, N1) first-layer projection of the (unfolded) features, channels last.
  // coord, cell: (B, Q, 2). w_rel: (N1, 2 or 4) first-layer columns of rel_coord [, rel_cell].
  // weights/biases: the remaining Linear layers (may be empty), ReLU between layers.
  // precision: operands of the hidden-layer products on CUDA ("ieee", "tf32", "bf16", "fp16",
  // fp32 accumulation); the CPU kernel computes in the tensors' dtype and ignores it.
  m.def(
      "liif_query_core(Tensor proj, Tensor coord, Tensor? cell, Tensor w_rel, Tensor b1, "
      "Tensor[] weights, Tensor[] biases, bool local_ensemble, bool cell_decode, str precision=\"ieee\") -> Tensor");
  // Returns grads of (proj, w_rel, b1, weights, biases); coord and cell get none.
  m.def(
      "liif_query_core_backward(Tensor grad_out, Tensor proj, Tensor coord, Tensor? cell, "
      "Tensor w_rel, Tensor b1, Tensor[] weights, Tensor[] biases, bool local_ensemble, "
      "bool cell_decode, str precision=\"ieee\") -> (Tensor, Tensor, Tensor, Tensor[], Tensor[])");
}
