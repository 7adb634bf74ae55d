// csrc/cuda/liif_query.cu compiled as C++ against tests/native/cuda_emu.h, with C entry points
// for ctypes (tests/test_cuda_emulated.py). dynamic_conv: cuda_emu_dconv.cpp.
#define FASTLIIF_CUDA_EMULATION 1
#include "cuda_emu.h"

#include "../../csrc/cuda/kernels.h"

// Software mma.sync for the emulation, written from the PTX ISA's fragment tables ("Matrix
// Fragments for mma.m16n8k8 / m16n8k16"): the warp publishes its fragments, each lane rebuilds
// A (16 x K) and B (K x 8) from them and computes its four accumulator elements.
namespace fastliif {
namespace cuda {
inline unsigned float_bits(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
inline float bits_float(unsigned u) { float x; std::memcpy(&x, &u, 4); return x; }
inline unsigned to_tf32(float x) {  // cvt.rna.tf32.f32: 10 mantissa bits, ties away from zero
  const unsigned u = float_bits(x);
  return (u & 0x7f800000u) == 0x7f800000u ? u : (u + 0x1000u) & 0xffffe000u;
}
template <Precision P>
unsigned half_bits(float x) {
  if constexpr (P == Precision::kBf16) {  // round to nearest even
    const unsigned u = float_bits(x);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  } else {
    const _Float16 h = static_cast<_Float16>(x);
    unsigned short v;
    std::memcpy(&v, &h, 2);
    return v;
  }
}
template <Precision P>
float half_value(unsigned v) {
  if constexpr (P == Precision::kBf16) return bits_float(v << 16);
  const unsigned short s = static_cast<unsigned short>(v);
  _Float16 h;
  std::memcpy(&h, &s, 2);
  return static_cast<float>(h);
}
template <Precision P>
unsigned pack2(float lo, float hi) { return half_bits<P>(lo) | (half_bits<P>(hi) << 16); }

inline unsigned emu_a[32][32][4], emu_b[32][32][2];  // [warp][lane][register]
template <Precision P>
void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = 0; i < 4; ++i) emu_a[warp][lane][i] = a[i];
  for (int i = 0; i < 2; ++i) emu_b[warp][lane][i] = b[i];
  emu::warp_barriers[warp]->arrive_and_wait();
  auto A = [&](int row, int k) -> float {
    if constexpr (P == Precision::kTf32) return bits_float(emu_a[warp][(row % 8) * 4 + k % 4][(row >= 8) + 2 * (k >= 4)]);
    const unsigned r = emu_a[warp][(row % 8) * 4 + (k % 8) / 2][(row >= 8) + 2 * (k >= 8)];
    return half_value<P>(k % 2 ? r >> 16 : r & 0xffffu);
  };
  auto B = [&](int k, int n) -> float {
    if constexpr (P == Precision::kTf32) return bits_float(emu_b[warp][n * 4 + k % 4][k >= 4]);
    const unsigned r = emu_b[warp][n * 4 + (k % 8) / 2][k >= 8];
    return half_value<P>(k % 2 ? r >> 16 : r & 0xffffu);
  };
  constexpr int KS = P == Precision::kTf32 ? 8 : 16;
  const int g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
    float acc = d[e];
    for (int k = 0; k < KS; ++k) acc += A(row, k) * B(k, col);
    d[e] = acc;
  }
  emu::warp_barriers[warp]->arrive_and_wait();
}
}  // namespace cuda
}  // namespace fastliif

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
                           int ensemble, int64_t B, int64_t Q, int64_t h, int64_t w, int precision) {
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
  p.precision = static_cast<Precision>(precision);
  return p;
}

extern "C" {
int emu_set_sms(int n) { return emu::sms = n; }

int emu_liif_forward(const float* proj, const float* coord, const float* cell, const float* w_rel, const float* b1,
                     const float** W, const float** b, const int* width, int nl, int nrel, int ensemble, int64_t B,
                     int64_t Q, int64_t h, int64_t w, int precision, float* out) {
  return liif_query_forward(
      problem(proj, coord, cell, w_rel, b1, W, b, width, nl, nrel, ensemble, B, Q, h, w, precision), out, nullptr);
}

int64_t emu_liif_param_count(const int* width, int nl, int nrel) {
  const float* none[kLiifMaxLayers] = {};
  return liif_param_count(problem(nullptr, nullptr, nullptr, nullptr, nullptr, none, none, width, nl, nrel, 1, 1, 1, 1, 1, 0));
}

int emu_liif_backward(const float* proj, const float* coord, const float* cell, const float* w_rel, const float* b1,
                      const float** W, const float** b, const int* width, int nl, int nrel, int ensemble, int64_t B,
                      int64_t Q, int64_t h, int64_t w, int precision, const float* grad_out, float* grad_proj,
                      float* grad_params) {
  const LiifProblem p = problem(proj, coord, cell, w_rel, b1, W, b, width, nl, nrel, ensemble, B, Q, h, w, precision);
  std::vector<float> workspace(static_cast<size_t>(liif_backward_workspace(p)) + 1);
  return liif_query_backward(p, grad_out, grad_proj, grad_params, workspace.data(), nullptr);
}

}
