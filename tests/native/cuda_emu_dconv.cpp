// csrc/cuda/dynamic_conv.cu compiled as C++ against tests/native/cuda_emu.h, with C entry points
// for ctypes (tests/test_cuda_emulated.py).
#define FASTLIIF_CUDA_EMULATION 1
#include "cuda_emu.h"

#include "../../csrc/cuda/dynamic_conv.cu"

namespace fastliif {
namespace cuda {
namespace {
alignas(16) unsigned char smem_raw[emu::kSmemBytes];  // the kernels' `extern __shared__` buffer
}  // namespace
}  // namespace cuda
}  // namespace fastliif

using namespace fastliif::cuda;

extern "C" {
int emu_dconv_forward(const float* image, const float* kernel, float* out, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t k, int64_t s, int per_channel) {
  return dynamic_conv_forward<float>(image, kernel, out, DcShape{N, C, H, W, k, s, per_channel != 0}, nullptr);
}

int emu_dconv_backward(const float* grad_out, const float* image, const float* kernel, float* grad_image,
                       float* grad_kernel, int64_t N, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s,
                       int per_channel) {
  return dynamic_conv_backward<float>(grad_out, image, kernel, grad_image, grad_kernel,
                                      DcShape{N, C, H, W, k, s, per_channel != 0}, nullptr);
}
}
