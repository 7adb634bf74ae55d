// Torch glue of the CUDA fused LIIF query (csrc/cuda/liif_query.cu): checks, layout, streams,
// and the split of the flat parameter-gradient buffer into PyTorch's tensors.
// Compiled only in CUDA builds (setup.py adds csrc/cuda/*.cpp with the .cu files and WITH_CUDA).
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../op_checks.h"
#include "cuda_glue.h"
#include "kernels.h"

namespace fastliif {
namespace {

cuda::Precision parse_precision(c10::string_view s) {
  if (s == "ieee") return cuda::Precision::kIeee;
  if (s == "tf32") return cuda::Precision::kTf32;
  if (s == "bf16") return cuda::Precision::kBf16;
  if (s == "fp16") return cuda::Precision::kFp16;
  TORCH_CHECK(false, "liif_query_core (cuda): precision must be one of ieee, tf32, bf16, fp16, got '", s, "'");
}

// float32 operands, kept alive for the kernel, and the kernel's view of them.
struct CudaOperands {
  at::Tensor proj, coord, cell, w_rel, b1;
  std::vector<at::Tensor> weights, biases;
  cuda::LiifProblem p{};

  CudaOperands(const at::Tensor& proj_in, const at::Tensor& coord_in, const std::optional<at::Tensor>& cell_in,
               const at::Tensor& w_rel_in, const at::Tensor& b1_in, at::TensorList weights_in,
               at::TensorList biases_in, bool local_ensemble, bool cell_decode, c10::string_view precision) {
    check_liif_inputs(proj_in, coord_in, cell_in, w_rel_in, b1_in, weights_in, biases_in, cell_decode, kCudaLiif);
    const int64_t nl = static_cast<int64_t>(weights_in.size());
    TORCH_CHECK(nl <= cuda::kLiifMaxLayers, "liif_query_core (cuda): at most ", cuda::kLiifMaxLayers,
                " layers after the first, got ", nl);
    TORCH_CHECK(proj_in.size(3) <= cuda::kLiifMaxWidth, "liif_query_core (cuda): layer widths up to ",
                cuda::kLiifMaxWidth, ", got ", proj_in.size(3));
    for (const auto& W : weights_in)
      TORCH_CHECK(W.size(0) <= cuda::kLiifMaxWidth, "liif_query_core (cuda): layer widths up to ",
                  cuda::kLiifMaxWidth, ", got ", W.size(0));
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    proj = compute_dtype(proj_in);
    coord = compute_dtype(coord_in);
    if (cell_decode) cell = compute_dtype(*cell_in);
    w_rel = compute_dtype(w_rel_in);
    b1 = compute_dtype(b1_in);
    p.proj = proj.data_ptr<float>();
    p.coord = coord.data_ptr<float>();
    p.cell = cell_decode ? cell.data_ptr<float>() : nullptr;
    p.w_rel = w_rel.data_ptr<float>();
    p.b1 = b1.data_ptr<float>();
    p.width[0] = static_cast<int>(proj.size(3));
    for (int64_t l = 0; l < nl; ++l) {
      weights.push_back(compute_dtype(weights_in[l]));
      biases.push_back(compute_dtype(biases_in[l]));
      p.W[l] = weights.back().data_ptr<float>();
      p.b[l] = biases.back().data_ptr<float>();
      p.width[l + 1] = static_cast<int>(weights.back().size(0));
    }
    p.nl = static_cast<int>(nl);
    p.nrel = cell_decode ? 4 : 2;
    p.ensemble = local_ensemble;
    p.B = proj.size(0);
    p.Q = coord.size(1);
    p.h = proj.size(1);
    p.w = proj.size(2);
    p.precision = parse_precision(precision);
  }
};

at::Tensor liif_query_core_cuda(const at::Tensor& proj, const at::Tensor& coord,
                                const std::optional<at::Tensor>& cell, const at::Tensor& w_rel,
                                const at::Tensor& b1, at::TensorList weights, at::TensorList biases,
                                bool local_ensemble, bool cell_decode, c10::string_view precision) {
  const c10::cuda::CUDAGuard guard(proj.device());
  const CudaOperands o(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode, precision);
  at::Tensor out = at::empty({o.p.B, o.p.Q, o.p.width[o.p.nl]}, o.proj.options());
  check_cuda(cuda::liif_query_forward(o.p, out.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream()),
             "liif_query_core");
  return out.to(proj.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>
liif_query_core_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& proj, const at::Tensor& coord,
                              const std::optional<at::Tensor>& cell, const at::Tensor& w_rel, const at::Tensor& b1,
                              at::TensorList weights, at::TensorList biases, bool local_ensemble,
                              bool cell_decode, c10::string_view precision) {
  const c10::cuda::CUDAGuard guard(proj.device());
  const CudaOperands o(proj, coord, cell, w_rel, b1, weights, biases, local_ensemble, cell_decode, precision);
  const cuda::LiifProblem& p = o.p;
  const int64_t out_dim = p.width[p.nl];
  TORCH_CHECK(grad_out_in.dim() == 3 && grad_out_in.size(0) == p.B && grad_out_in.size(1) == p.Q &&
                  grad_out_in.size(2) == out_dim,
              "liif_query_core_backward: grad_out must be (", p.B, ", ", p.Q, ", ", out_dim, ")");
  TORCH_CHECK(grad_out_in.device() == proj.device(), "liif_query_core_backward: grad_out is on another device");
  // dP is scattered with float atomics; the parameter gradients are deterministic.
  at::globalContext().alertNotDeterministic("liif_query_core_backward (cuda): the projection gradient");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor grad_out = compute_dtype(grad_out_in);
  const auto opts = o.proj.options();
  at::Tensor grad_proj = at::zeros(o.proj.sizes(), opts);
  at::Tensor grad_params = at::empty({cuda::liif_param_count(p)}, opts);
  at::Tensor workspace = at::empty({cuda::liif_backward_workspace(p)}, opts);
  check_cuda(cuda::liif_query_backward(p, grad_out.data_ptr<float>(), grad_proj.data_ptr<float>(),
                                       grad_params.data_ptr<float>(), workspace.data_ptr<float>(),
                                       c10::cuda::getCurrentCUDAStream().stream()),
             "liif_query_core_backward");
  // unpack the flat buffer: [w_rel, b1, W[0], b[0], ...] (kernels.h)
  int64_t off = 0;
  auto take = [&](const at::Tensor& like) {
    at::Tensor t = grad_params.narrow(0, off, like.numel()).view(like.sizes()).to(like.scalar_type());
    off += like.numel();
    return t;
  };
  at::Tensor g_wrel = take(w_rel), g_b1 = take(b1);
  std::vector<at::Tensor> g_w, g_b;
  for (size_t l = 0; l < weights.size(); ++l) {
    g_w.push_back(take(weights[l]));
    g_b.push_back(take(biases[l]));
  }
  return {grad_proj.to(proj.scalar_type()), g_wrel, g_b1, g_w, g_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastliif, CUDA, m) {
  m.impl("liif_query_core", &liif_query_core_cuda);
  m.impl("liif_query_core_backward", &liif_query_core_backward_cuda);
}

}  // namespace fastliif
#endif  // WITH_CUDA
