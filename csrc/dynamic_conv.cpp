// Schema of the per-pixel dynamic convolution (UDVD). Kernels: csrc/cpu/dynamic_conv_cpu.cpp;
// fake kernels and autograd: fastliif/ops/_library.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fastliif, m) {
  // image (N, C, H, W); kernel (N, k*k*s*s, H, W), or (N, C*k*k*s*s, H, W) when per_channel.
  m.def("dynamic_conv(Tensor image, Tensor kernel, int kernel_size, int scale, bool per_channel) -> Tensor");
  m.def(
      "dynamic_conv_backward(Tensor grad_out, Tensor image, Tensor kernel, int kernel_size, int scale, "
      "bool per_channel) -> (Tensor, Tensor)");
}
