// csrc/cuda/liif_query.cu compiled as C++ against tests/native/cuda_emu.h, with C entry points
// for ctypes (tests/test_cuda_emulated.py). dynamic_conv: cuda_emu_dconv.cpp.
#define FASTLIIF_CUDA_EMULATION 1
#include "cuda_emu.h"

#include "../../csrc/cuda/liif_query.cu"

namespace fastliif {
namespace cuda {
namespace {
// the kernels' `extern __shared__` buffers (blocks run one at a time)
alignas(16) float smem[emu::kSmemBytes / sizeof(float)];
alignas(16) unsigned char smem_raw[emu::kSmemBytes];
}  // namespace
}  // namespace cuda
}  // namespace fastliif

using namespace fastliif::cuda;

static LiifProblem problem(const float* proj, const float* coord, const float* cell, const float* w_rel,
                           const float* b1, const float** W, const float** b, const int* width, int nl, int nrel,
                           int ensemble, int64_t B, int64_t Q, int64_t h, int64_t w) {
  LiifProblem p{};
  p.proj = proj;
  p.coord = coord;
  p.cell = cell;
  p.w_rel = w_rel;
  p.b1 = b1;
  for (int l = 0; l < nl; ++l) {
    p.W[l] = W[l];
    p.b[l] = b[l];
  }
  for (int l = 0; l <= nl; ++l) p.width[l] = width[l];
  p.nl = nl;
  p.nrel = nrel;
  p.ensemble = ensemble != 0;
  p.B = B;
  p.Q = Q;
  p.h = h;
  p.w = w;
  p.precision = Precision::kIeee;
  return p;
}

extern "C" {
int emu_set_sms(int n) { return emu::sms = n; }

int emu_liif_forward(const float* proj, const float* coord, const float* cell, const float* w_rel, const float* b1,
                     const float** W, const float** b, const int* width, int nl, int nrel, int ensemble, int64_t B,
                     int64_t Q, int64_t h, int64_t w, float* out) {
  return liif_query_forward(problem(proj, coord, cell, w_rel, b1, W, b, width, nl, nrel, ensemble, B, Q, h, w), out,
                            nullptr);
}

int64_t emu_liif_param_count(const int* width, int nl, int nrel) {
  const float* none[kLiifMaxLayers] = {};
  return liif_param_count(problem(nullptr, nullptr, nullptr, nullptr, nullptr, none, none, width, nl, nrel, 1, 1, 1, 1, 1));
}

int emu_liif_backward(const float* proj, const float* coord, const float* cell, const float* w_rel, const float* b1,
                      const float** W, const float** b, const int* width, int nl, int nrel, int ensemble, int64_t B,
                      int64_t Q, int64_t h, int64_t w, const float* grad_out, float* grad_proj, float* grad_params) {
  const LiifProblem p = problem(proj, coord, cell, w_rel, b1, W, b, width, nl, nrel, ensemble, B, Q, h, w);
  std::vector<float> workspace(static_cast<size_t>(liif_backward_workspace(p)) + 1);
  return liif_query_backward(p, grad_out, grad_proj, grad_params, workspace.data(), nullptr);
}

}
