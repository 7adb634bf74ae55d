// Index arithmetic of both fused ops, shared by the CPU kernels (csrc/cpu) and the CUDA
// kernels (csrc/cuda), so the CPU tests exercise the code the GPU runs (DESIGN.md 3, 5, 6).
//
// Plain C++ when compiled without nvcc. No torch headers: the .cu files include this too.
//
// Bit-identical on both sides: nvcc fuses a*b + c into one FMA by default while the CPU
// build disables contraction (-ffp-contract=off), so every product and sum here that a
// compiler could fuse goes through mul()/add(), which the device maps to the never-fused
// __fmul_rn/__fadd_rn intrinsics. Division is IEEE on both sides (nvcc's default
// -prec-div=true; do not build with --use_fast_math).
#pragma once

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define FL_HD __host__ __device__ __forceinline__
#else
#define FL_HD inline
#endif

namespace fastliif {
namespace im {

// ------------------------------------------------------------------ exact arithmetic

FL_HD float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FL_HD double mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FL_HD float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FL_HD double add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
FL_HD float fused(float a, float b, float c) { return fmaf(a, b, c); }
FL_HD double fused(double a, double b, double c) { return fma(a, b, c); }
// Round half to even (the default rounding mode; rint and nearbyint agree on the value).
FL_HD float round_even(float x) { return rintf(x); }
FL_HD double round_even(double x) { return rint(x); }
FL_HD float absval(float x) { return fabsf(x); }
FL_HD double absval(double x) { return fabs(x); }

template <typename T>
FL_HD T min2(T a, T b) { return b < a ? b : a; }
template <typename T>
FL_HD T max2(T a, T b) { return a < b ? b : a; }

// ReLU that keeps NaN as torch.relu does (a diverged run must stay visible).
template <typename T>
FL_HD T relu(T x) { return x < T(0) ? T(0) : x; }
// Backward of a ReLU whose output is a: PyTorch passes the gradient where a > 0.
template <typename T>
FL_HD T relu_grad(T d, T a) { return a > T(0) ? d : T(0); }

// ------------------------------------------------------------------ LIIF query (DESIGN.md 3)

// Index picked by grid_sample(mode='nearest', align_corners=False) on CPU: its vectorised
// path evaluates fma(coord + 1, size / 2, -0.5) and rounds half to even. The clamp only
// matters if rounding ever left the range (the coordinate is already clamped by the caller).
template <typename T>
FL_HD int64_t nearest_index(T c, int64_t size) {
  const T src = fused(add(c, T(1)), static_cast<T>(size) / T(2), T(-0.5));
  const int64_t i = static_cast<int64_t>(round_even(src));
  return min2<int64_t>(max2<int64_t>(i, 0), size - 1);
}

// Centre of cell i as make_coord builds it (q_coord): float32 arithmetic,
// (2r) * i + (-1 + r) with r = 1/n, the product and the sum rounded separately.
FL_HD float cell_centre(int64_t i, int64_t n) {
  const double r = 2.0 / (2.0 * static_cast<double>(n));
  const float step = static_cast<float>(2.0 * r);
  const float first = static_cast<float>(-1.0 + r);
  return add(mul(step, static_cast<float>(i)), first);
}

// Where one query samples the feature map, with the official query_rgb arithmetic.
template <typename T>
struct Corners {
  int64_t cell[4];  // iy * w + ix: the sampled cell of each corner in its (h, w) map
  T rel[4][2];      // (coord - q_coord) * (h, w), from the unshifted, unclamped coord
  T weight[4];      // area of the opposite corner / total area (1 without the ensemble)
};

// Corner t of the local ensemble: the official code loops vx (rows) outer, vy (columns)
// inner over (-1, 1), so t = 2 * (vx > 0) + (vy > 0). Without the ensemble: no shift.
// The shifted coordinate is clamped to (-1 + 1e-6, 1 - 1e-6) before sampling.
template <typename T>
FL_HD T shifted_coord(T c, int64_t size, int t_bit, bool ensemble) {
  T v = c;
  if (ensemble) {
    const double dir = t_bit ? 1.0 : -1.0;
    v = add(v, static_cast<T>(add(mul(dir, 2.0 / static_cast<double>(size) / 2.0), 1e-6)));
  }
  const T lo = static_cast<T>(-1 + 1e-6), hi = static_cast<T>(1 - 1e-6);
  return min2(max2(v, lo), hi);
}

// All corners of query (cy, cx) on an (h, w) map; n = 4 with the ensemble, else 1.
template <typename T>
FL_HD void query_corners(T cy, T cx, int64_t h, int64_t w, bool ensemble, Corners<T>& k) {
  const int n = ensemble ? 4 : 1;
  T area[4];
  for (int t = 0; t < n; ++t) {
    const T y = shifted_coord(cy, h, t >> 1, ensemble);
    const T x = shifted_coord(cx, w, t & 1, ensemble);
    const int64_t iy = nearest_index(y, h), ix = nearest_index(x, w);
    k.cell[t] = iy * w + ix;
    k.rel[t][0] = mul(cy - static_cast<T>(cell_centre(iy, h)), static_cast<T>(h));
    k.rel[t][1] = mul(cx - static_cast<T>(cell_centre(ix, w)), static_cast<T>(w));
    area[t] = add(absval(mul(k.rel[t][0], k.rel[t][1])), static_cast<T>(1e-9));
  }
  if (!ensemble) {
    k.weight[0] = area[0] / area[0];  // 1, or NaN exactly where the reference's is
    return;
  }
  const T total = add(add(add(area[0], area[1]), area[2]), area[3]);
  // each corner is weighted by the area of the diagonally opposite one
  for (int t = 0; t < 4; ++t) k.weight[t] = area[3 - t] / total;
}

// rel_cell = cell * (h, w): the third and fourth first-layer features with cell_decode.
template <typename T>
FL_HD T rel_cell(T cell, int64_t size) { return mul(cell, static_cast<T>(size)); }

// ------------------------------------------------------------------ dynamic conv (DESIGN.md 5)
//
//   out[n, c, y*s+i, x*s+j] = sum_{a,b<k} img[n, c, y+a-p, x+b-p] * ker[n, m + (b*k+a)*s*s + i*s+j, y, x]

// Tap (a, b) = (row offset, column offset) is kernel tap b*k + a: the transposed order of
// UDVD's PixelConv (its permute(0,2,3,1,5,4)).
FL_HD int64_t dc_tap(int64_t a, int64_t b, int64_t k) { return b * k + a; }
FL_HD int64_t dc_tap_row(int64_t tap, int64_t k) { return tap % k; }  // a
FL_HD int64_t dc_tap_col(int64_t tap, int64_t k) { return tap / k; }  // b

// pixel_shuffle's sub-pixel order: sub = i*s + j lands at (y*s + i, x*s + j).
FL_HD int64_t dc_sub(int64_t i, int64_t j, int64_t s) { return i * s + j; }
FL_HD int64_t dc_sub_row(int64_t sub, int64_t s) { return sub / s; }  // i
FL_HD int64_t dc_sub_col(int64_t sub, int64_t s) { return sub % s; }  // j

// Kernel channel of (channel c, tap, sub) among kc = taps [* C] channels, taps = k*k*s*s:
// one kernel for all channels (shared, UDVD) or a block of taps per channel (per_channel).
FL_HD int64_t dc_kernel_channel(int64_t c, int64_t tap, int64_t sub, int64_t taps, int64_t ss,
                                bool per_channel) {
  return (per_channel ? c * taps : 0) + tap * ss + sub;
}

}  // namespace im
}  // namespace fastliif
