// Shared bits of the CUDA glue: turning a kernel's cudaError_t into a one-line exception, and
// widening reduced-precision storage to the float32 the kernels compute in.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

namespace fastliif {

inline void check_cuda(cudaError_t e, const char* op) {
  TORCH_CHECK(e == cudaSuccess, op, " (cuda): kernel failed: ", cudaGetErrorString(e));
}

// float32 copy of t when its storage is bf16/fp16, else t itself (contiguous).
inline at::Tensor compute_dtype(const at::Tensor& t, bool keep_double = false) {
  if (t.scalar_type() == at::kFloat || (keep_double && t.scalar_type() == at::kDouble)) return t.contiguous();
  return t.to(at::kFloat).contiguous();
}

}  // namespace fastliif
