// Torch glue of the CUDA dynamic_conv (csrc/cuda/dynamic_conv.cu): checks, layout, streams.
// Compiled only in CUDA builds (setup.py adds csrc/cuda/*.cpp with the .cu files and WITH_CUDA).
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../op_checks.h"
#include "cuda_glue.h"
#include "kernels.h"

namespace fastliif {
namespace {

cuda::DcShape shape_of(const Geometry& g) { return {g.N, g.C, g.H, g.W, g.k, g.s, g.per_channel}; }

at::Tensor dynamic_conv_cuda(const at::Tensor& image_in, const at::Tensor& kernel_in, int64_t kernel_size,
                             int64_t scale, bool per_channel) {
  const Geometry g = geometry(image_in, kernel_in, kernel_size, scale, per_channel, kCudaDconv);
  const c10::cuda::CUDAGuard guard(image_in.device());
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor image = compute_dtype(image_in, true), kernel = compute_dtype(kernel_in, true);
  at::Tensor out = at::empty({g.N, g.C, g.H * g.s, g.W * g.s}, image.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "dynamic_conv_cuda", [&] {
    check_cuda(cuda::dynamic_conv_forward<scalar_t>(image.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(),
                                                    out.data_ptr<scalar_t>(), shape_of(g), stream),
               "dynamic_conv");
  });
  return out.to(image_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> dynamic_conv_backward_cuda(const at::Tensor& grad_out_in,
                                                              const at::Tensor& image_in,
                                                              const at::Tensor& kernel_in, int64_t kernel_size,
                                                              int64_t scale, bool per_channel) {
  const Geometry g = geometry(image_in, kernel_in, kernel_size, scale, per_channel, kCudaDconv);
  TORCH_CHECK(grad_out_in.dim() == 4 && grad_out_in.size(0) == g.N && grad_out_in.size(1) == g.C &&
                  grad_out_in.size(2) == g.H * g.s && grad_out_in.size(3) == g.W * g.s,
              "dynamic_conv_backward: grad_out must be (", g.N, ", ", g.C, ", ", g.H * g.s, ", ", g.W * g.s,
              "), got ", grad_out_in.sizes());
  TORCH_CHECK(grad_out_in.device() == image_in.device(), "dynamic_conv_backward: grad_out is on another device");
  const c10::cuda::CUDAGuard guard(image_in.device());
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor image = compute_dtype(image_in, true), kernel = compute_dtype(kernel_in, true);
  const at::Tensor grad_out = grad_out_in.to(image.scalar_type()).contiguous();
  at::Tensor grad_image = at::empty(image.sizes(), image.options());
  at::Tensor grad_kernel = at::empty(kernel.sizes(), kernel.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "dynamic_conv_backward_cuda", [&] {
    check_cuda(cuda::dynamic_conv_backward<scalar_t>(grad_out.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(),
                                                     kernel.data_ptr<scalar_t>(), grad_image.data_ptr<scalar_t>(),
                                                     grad_kernel.data_ptr<scalar_t>(), shape_of(g), stream),
               "dynamic_conv_backward");
  });
  return {grad_image.to(image_in.scalar_type()), grad_kernel.to(kernel_in.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastliif, CUDA, m) {
  m.impl("dynamic_conv", &dynamic_conv_cuda);
  m.impl("dynamic_conv_backward", &dynamic_conv_backward_cuda);
}

}  // namespace fastliif
#endif  // WITH_CUDA
