// Host entry points of the CUDA kernels (csrc/cuda/*.cu). No torch headers: the .cu files
// compile with plain `nvcc -c` (scripts/nvcc_check.sh); the torch glue (*_cuda.cpp) checks
// and lays out the tensors, calls these and turns a returned cudaError_t into an exception.
#pragma once

#include <stdint.h>
#ifndef FASTLIIF_CUDA_EMULATION  // tests/native/cuda_emu.h stands in for the runtime on CPU
#include <cuda_runtime_api.h>
// kernel<<<grid, block, smem, stream>>>(args), spelled so the CPU emulation can launch it too
#define FL_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

namespace fastliif {
namespace cuda {

// ------------------------------------------------------------------ dynamic_conv

struct DcShape {
  int64_t N, C, H, W, k, s;  // image (N, C, H, W); kernel (N, kc, H, W), kc = [C *] k*k*s*s
  bool per_channel;
};

// out (N, C, H*s, W*s). All tensors contiguous. T = float or double.
template <typename T>
cudaError_t dynamic_conv_forward(const T* image, const T* kernel, T* out, DcShape g, cudaStream_t stream);

// grad_out (N, C, H*s, W*s) -> grad_image (N, C, H, W), grad_kernel (N, kc, H, W); gathers only.
template <typename T>
cudaError_t dynamic_conv_backward(const T* grad_out, const T* image, const T* kernel, T* grad_image,
                                  T* grad_kernel, DcShape g, cudaStream_t stream);

// ------------------------------------------------------------------ liif_query_core

constexpr int kLiifMaxLayers = 8;   // Linear layers after the first (LIIF: 4)
constexpr int kLiifMaxWidth = 256;  // widest hidden layer / first-layer width held in shared memory

enum class Precision : int { kIeee = 0, kTf32 = 1, kBf16 = 2, kFp16 = 3 };

// Everything float32 and contiguous. Layer l of `W` is (width[l+1], width[l]) in PyTorch's layout.
struct LiifProblem {
  const float* proj;   // (B*h*w, width[0]) first-layer projection, channels last
  const float* coord;  // (B*Q, 2)
  const float* cell;   // (B*Q, 2) or nullptr without cell_decode
  const float* w_rel;  // (width[0], nrel) first-layer columns of rel_coord [, rel_cell]
  const float* b1;     // (width[0])
  const float* W[kLiifMaxLayers];
  const float* b[kLiifMaxLayers];
  int width[kLiifMaxLayers + 1];  // width[0] = N1; width[nl] = output width
  int nl;                         // layers after the first (0 allowed: output = mixed first layer)
  int nrel;                       // 2, or 4 with cell_decode
  bool ensemble;
  int64_t B, Q, h, w;
  Precision precision;
};

// out (B*Q, width[nl]).
cudaError_t liif_query_forward(const LiifProblem& p, float* out, cudaStream_t stream);

// Parameter gradients go to one buffer laid out as [w_rel (N1*nrel), b1 (N1), W[0], b[0], ...,
// W[nl-1], b[nl-1]] (liif_param_count floats), fully written (not accumulated). grad_proj
// (B*h*w, N1) must be zeroed by the caller; it receives atomic adds (not deterministic).
// The parameter gradients are deterministic: per-block split buffers summed in block order.
int64_t liif_param_count(const LiifProblem& p);
// Scratch floats the backward needs (split buffers), for the caller to allocate.
int64_t liif_backward_workspace(const LiifProblem& p);
cudaError_t liif_query_backward(const LiifProblem& p, const float* grad_out, float* grad_proj,
                                float* grad_params, float* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastliif
