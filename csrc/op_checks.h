// Argument checks of the fused ops, shared by the CPU kernels (csrc/cpu) and the CUDA glue
// (csrc/cuda/*_cuda.cpp): one message per problem, the same for every backend.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace fastliif {

// What a backend accepts: its device type and storage dtypes.
struct BackendSpec {
  const char* name;         // "cpu", "cuda"
  at::DeviceType device;
  const char* device_name;  // for messages
  const char* dtypes;       // for messages
  at::ScalarType ok[4];
  bool float32_coords;      // coord and cell may be float32 whatever proj's dtype (read as float32)

  bool dtype_ok(at::ScalarType t) const { return t == ok[0] || t == ok[1] || t == ok[2] || t == ok[3]; }
};

inline const BackendSpec kCpu{"cpu", at::kCPU, "CPU", "float32 or float64",
                              {at::kFloat, at::kDouble, at::kDouble, at::kDouble}, false};
// CUDA kernels compute in float32 (dynamic_conv also float64); bf16/fp16 storage is widened by the glue.
inline const BackendSpec kCudaLiif{"cuda", at::kCUDA, "CUDA", "float32, bfloat16 or float16",
                                   {at::kFloat, at::kBFloat16, at::kHalf, at::kHalf}, true};
inline const BackendSpec kCudaDconv{"cuda", at::kCUDA, "CUDA", "float32, float64, bfloat16 or float16",
                                    {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}, false};

inline void check_liif_inputs(const at::Tensor& proj, const at::Tensor& coord,
                              const std::optional<at::Tensor>& cell, const at::Tensor& w_rel,
                              const at::Tensor& b1, at::TensorList weights, at::TensorList biases,
                              bool cell_decode, const BackendSpec& be) {
  TORCH_CHECK(proj.dim() == 4, "liif_query_core: proj must be (B, h, w, N1), got ", proj.sizes());
  TORCH_CHECK(proj.size(1) > 0 && proj.size(2) > 0, "liif_query_core: empty feature map");
  TORCH_CHECK(coord.dim() == 3 && coord.size(2) == 2 && coord.size(0) == proj.size(0),
              "liif_query_core: coord must be (B, Q, 2) with B = ", proj.size(0), ", got ",
              coord.sizes());
  TORCH_CHECK(be.dtype_ok(proj.scalar_type()), "liif_query_core (", be.name, "): ", be.dtypes, " only, got ",
              proj.scalar_type());
  const int64_t n1 = proj.size(3), nrel = cell_decode ? 4 : 2;
  TORCH_CHECK(w_rel.dim() == 2 && w_rel.size(0) == n1 && w_rel.size(1) == nrel,
              "liif_query_core: w_rel must be (", n1, ", ", nrel, "), got ", w_rel.sizes());
  TORCH_CHECK(b1.dim() == 1 && b1.size(0) == n1, "liif_query_core: b1 must be (", n1, ")");
  if (cell_decode) {
    TORCH_CHECK(cell.has_value() && cell->sizes() == coord.sizes(),
                "liif_query_core: cell must match coord's shape ", coord.sizes());
  }
  TORCH_CHECK(weights.size() == biases.size(), "liif_query_core: ", weights.size(),
              " weights but ", biases.size(), " biases");
  int64_t width = n1;
  for (size_t l = 0; l < weights.size(); ++l) {
    TORCH_CHECK(weights[l].dim() == 2 && weights[l].size(1) == width,
                "liif_query_core: weights[", l, "] must have ", width, " input columns, got ",
                weights[l].sizes());
    TORCH_CHECK(biases[l].dim() == 1 && biases[l].size(0) == weights[l].size(0),
                "liif_query_core: biases[", l, "] must be (", weights[l].size(0), ")");
    width = weights[l].size(0);
  }
  std::vector<at::Tensor> all = {proj, w_rel, b1};
  std::vector<at::Tensor> coords = {coord};
  if (cell_decode) coords.push_back(*cell);
  for (const auto& t : coords) {
    TORCH_CHECK(t.scalar_type() == proj.scalar_type() || (be.float32_coords && t.scalar_type() == at::kFloat),
                "liif_query_core: dtype mismatch, ", t.scalar_type(), " vs ", proj.scalar_type());
    TORCH_CHECK(t.device() == proj.device(), "liif_query_core (", be.name, "): all tensors must be on one ",
                be.device_name, " device");
  }
  for (const auto& t : weights) all.push_back(t);
  for (const auto& t : biases) all.push_back(t);
  for (const auto& t : all) {
    TORCH_CHECK(t.device() == proj.device() && t.device().type() == be.device, "liif_query_core (", be.name,
                "): all tensors must be on one ", be.device_name, " device");
    TORCH_CHECK(t.scalar_type() == proj.scalar_type(),
                "liif_query_core: dtype mismatch, ", t.scalar_type(), " vs ", proj.scalar_type());
  }
}

struct Geometry {
  int64_t N, C, H, W, k, s, p, taps, kc;  // taps = k*k*s*s, kc = kernel channels
  bool per_channel;
};

inline Geometry geometry(const at::Tensor& image, const at::Tensor& kernel, int64_t k, int64_t s,
                  bool per_channel, const BackendSpec& be) {
  TORCH_CHECK(image.dim() == 4 && kernel.dim() == 4, "dynamic_conv: image and kernel must be 4-D");
  TORCH_CHECK(k >= 1 && k % 2 == 1, "dynamic_conv: kernel_size must be odd and positive, got ", k);
  TORCH_CHECK(s >= 1, "dynamic_conv: scale must be positive, got ", s);
  Geometry g{image.size(0), image.size(1), image.size(2), image.size(3), k, s, (k - 1) / 2,
             k * k * s * s, 0, per_channel};
  g.kc = per_channel ? g.C * g.taps : g.taps;
  TORCH_CHECK(kernel.size(0) == g.N && kernel.size(1) == g.kc && kernel.size(2) == g.H &&
                  kernel.size(3) == g.W,
              "dynamic_conv: kernel must be (", g.N, ", ", g.kc, ", ", g.H, ", ", g.W, "), got ",
              kernel.sizes());
  TORCH_CHECK(image.scalar_type() == kernel.scalar_type(), "dynamic_conv: dtype mismatch");
  TORCH_CHECK(be.dtype_ok(image.scalar_type()), "dynamic_conv (", be.name, "): ", be.dtypes, " only, got ",
              image.scalar_type());
  TORCH_CHECK(image.device() == kernel.device() && image.device().type() == be.device, "dynamic_conv (",
              be.name, "): tensors must be on one ", be.device_name, " device");
  return g;
}

}  // namespace fastliif
