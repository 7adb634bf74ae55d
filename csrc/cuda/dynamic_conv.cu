// Per-pixel dynamic convolution on CUDA (UDVD's PixelConv, DESIGN.md 5), forward and backward.
//
//   out[n, c, y*s+i, x*s+j] = sum_{a,b<k} img[n, c, y+a-p, x+b-p] * ker[n, m + (b*k+a)*s*s + i*s+j, y, x]
//
// Memory-bound. Forward: a block owns a TY x TX tile of low-resolution pixels and walks the
// channels CC at a time; the CC image tiles with their halo sit in shared memory (zero
// padding included), each thread reads its pixel's kernel values straight from global
// memory (consecutive threads = consecutive x: coalesced) once per channel group, and writes
// its s*s sub-pixels. Backward: two gathers, every output element written by exactly one
// thread, no atomics (CARAFE's pattern): d(kernel) per kernel element sums over the channels
// of its group, d(image) per image element sums over the k*k taps and s*s sub-pixels that read it.
// Index order (tap b*k + a, pixel_shuffle sub-pixels) comes from csrc/index_math.h, shared
// with the CPU kernel.
#ifndef FASTLIIF_CUDA_EMULATION
#include <cuda_runtime.h>
#endif

#include "../index_math.h"
#include "kernels.h"

namespace fastliif {
namespace cuda {
namespace {

constexpr int TX = 32, TY = 8;  // forward tile: one warp per row of 32 pixels
constexpr int CC = 4;           // channels per shared-memory pass (registers: CC accumulators)
constexpr int kThreads = 256;
constexpr size_t kSmemLimit = 48 * 1024;  // default per-block limit: no opt-in needed

template <typename T>
__global__ void __launch_bounds__(TX * TY) dc_forward_kernel(const T* __restrict__ img,
                                                             const T* __restrict__ ker,
                                                             T* __restrict__ out, DcShape g, int cc) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* tile = reinterpret_cast<T*>(smem_raw);  // [cc][TH][TW]
  const int k = static_cast<int>(g.k), p = (k - 1) / 2, s = static_cast<int>(g.s), ss = s * s;
  const int64_t taps = static_cast<int64_t>(k) * k * ss, kc = g.per_channel ? g.C * taps : taps;
  const int TW = TX + k - 1, TH = TY + k - 1;
  const int64_t n = blockIdx.z, H = g.H, W = g.W, HW = H * W;
  const int x0 = blockIdx.x * TX, y0 = blockIdx.y * TY;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * TX + tx;
  const int64_t x = x0 + tx, y = y0 + ty;
  const bool inside = x < W && y < H;
  const T* kpix = ker + n * kc * HW + y * W + x;  // this pixel's kernel values, HW apart

  for (int64_t c0 = 0; c0 < g.C; c0 += cc) {
    __syncthreads();  // the previous group's tile is no longer read
    for (int idx = tid; idx < cc * TH * TW; idx += TX * TY) {
      const int ci = idx / (TH * TW), rem = idx % (TH * TW), ry = rem / TW, rx = rem % TW;
      const int64_t c = c0 + ci, yy = y0 + ry - p, xx = x0 + rx - p;
      T v = T(0);
      if (c < g.C && yy >= 0 && yy < H && xx >= 0 && xx < W) v = img[((n * g.C + c) * H + yy) * W + xx];
      tile[idx] = v;
    }
    __syncthreads();
    if (!inside) continue;
    for (int sub = 0; sub < ss; ++sub) {
      T acc[CC];
#pragma unroll
      for (int ci = 0; ci < CC; ++ci) acc[ci] = T(0);
      for (int a = 0; a < k; ++a) {
        for (int b = 0; b < k; ++b) {
          const int64_t tap = im::dc_tap(a, b, k);
          const T* trow = tile + (ty + a) * TW + tx + b;
          if (!g.per_channel) {
            const T kv = __ldg(kpix + im::dc_kernel_channel(0, tap, sub, taps, ss, false) * HW);
#pragma unroll
            for (int ci = 0; ci < CC; ++ci)
              if (ci < cc) acc[ci] += trow[ci * TH * TW] * kv;
          } else {
#pragma unroll
            for (int ci = 0; ci < CC; ++ci) {
              if (ci < cc && c0 + ci < g.C) {
                const T kv = __ldg(kpix + im::dc_kernel_channel(c0 + ci, tap, sub, taps, ss, true) * HW);
                acc[ci] += trow[ci * TH * TW] * kv;
              }
            }
          }
        }
      }
      const int64_t oy = y * s + im::dc_sub_row(sub, s), ox = x * s + im::dc_sub_col(sub, s);
#pragma unroll
      for (int ci = 0; ci < CC; ++ci) {
        const int64_t c = c0 + ci;
        if (ci < cc && c < g.C) out[((n * g.C + c) * H * s + oy) * W * s + ox] = acc[ci];
      }
    }
  }
}

// d(kernel)[n, ch, y, x] = sum_{c in group} dout[n, c, y*s+i, x*s+j] * img[n, c, y+a-p, x+b-p].
template <typename T>
__global__ void __launch_bounds__(kThreads) dc_grad_kernel_kernel(const T* __restrict__ dout,
                                                                  const T* __restrict__ img,
                                                                  T* __restrict__ dker, DcShape g) {
  const int64_t k = g.k, p = (k - 1) / 2, s = g.s, ss = s * s, taps = k * k * ss;
  const int64_t kc = g.per_channel ? g.C * taps : taps, H = g.H, W = g.W, HW = H * W;
  const int64_t total = g.N * kc * HW;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = e % W, y = (e / W) % H, ch = (e / HW) % kc, n = e / (HW * kc);
    const int64_t group = ch / taps, tapsub = ch % taps, tap = tapsub / ss, sub = tapsub % ss;
    const int64_t a = im::dc_tap_row(tap, k), b = im::dc_tap_col(tap, k);
    const int64_t yy = y + a - p, xx = x + b - p;
    T acc = T(0);
    if (yy >= 0 && yy < H && xx >= 0 && xx < W) {
      const int64_t oy = y * s + im::dc_sub_row(sub, s), ox = x * s + im::dc_sub_col(sub, s);
      const int64_t c0 = g.per_channel ? group : 0, c1 = g.per_channel ? group + 1 : g.C;
      for (int64_t c = c0; c < c1; ++c)
        acc += __ldg(dout + ((n * g.C + c) * H * s + oy) * W * s + ox) * __ldg(img + ((n * g.C + c) * H + yy) * W + xx);
    }
    dker[e] = acc;
  }
}

// d(image)[n, c, yy, xx] = sum over taps (a, b) and sub-pixels of the outputs (y, x) =
// (yy - a + p, xx - b + p) that read it: dout[n, c, y*s+i, x*s+j] * ker[n, m + tap*ss + sub, y, x].
template <typename T>
__global__ void __launch_bounds__(kThreads) dc_grad_image_kernel(const T* __restrict__ dout,
                                                                 const T* __restrict__ ker,
                                                                 T* __restrict__ dimg, DcShape g) {
  const int64_t k = g.k, p = (k - 1) / 2, s = g.s, ss = s * s, taps = k * k * ss;
  const int64_t kc = g.per_channel ? g.C * taps : taps, H = g.H, W = g.W, HW = H * W;
  const int64_t total = g.N * g.C * HW;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t xx = e % W, yy = (e / W) % H, c = (e / HW) % g.C, n = e / (HW * g.C);
    T acc = T(0);
    for (int64_t a = 0; a < k; ++a) {
      const int64_t y = yy - a + p;
      if (y < 0 || y >= H) continue;
      for (int64_t b = 0; b < k; ++b) {
        const int64_t x = xx - b + p;
        if (x < 0 || x >= W) continue;
        const int64_t tap = im::dc_tap(a, b, k);
        const T* kp = ker + n * kc * HW + y * W + x;
        for (int64_t sub = 0; sub < ss; ++sub) {
          const int64_t oy = y * s + im::dc_sub_row(sub, s), ox = x * s + im::dc_sub_col(sub, s);
          acc += __ldg(dout + ((n * g.C + c) * H * s + oy) * W * s + ox) *
                 __ldg(kp + im::dc_kernel_channel(c, tap, sub, taps, ss, g.per_channel) * HW);
        }
      }
    }
    dimg[e] = acc;
  }
}

int grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < (1 << 20) ? blocks : (1 << 20));  // grid-stride beyond that
}

bool valid(const DcShape& g) {
  return g.N >= 0 && g.C >= 0 && g.H >= 0 && g.W >= 0 && g.k >= 1 && g.k % 2 == 1 && g.s >= 1 &&
         g.N <= 65535;  // forward grid z
}

}  // namespace

template <typename T>
cudaError_t dynamic_conv_forward(const T* image, const T* kernel, T* out, DcShape g, cudaStream_t stream) {
  if (!valid(g)) return cudaErrorInvalidValue;
  if (g.N * g.C * g.H * g.W == 0) return cudaSuccess;
  const size_t tile_bytes = static_cast<size_t>(TY + g.k - 1) * (TX + g.k - 1) * sizeof(T);
  if (tile_bytes > kSmemLimit) return cudaErrorInvalidValue;  // kernel_size too large for one tile
  int cc = static_cast<int>(kSmemLimit / tile_bytes);
  cc = cc < CC ? cc : CC;
  const dim3 block(TX, TY), grid((g.W + TX - 1) / TX, (g.H + TY - 1) / TY, g.N);
  if (grid.y > 65535) return cudaErrorInvalidValue;
  FL_LAUNCH(dc_forward_kernel<T>, grid, block, cc * tile_bytes, stream, image, kernel, out, g, cc);
  return cudaGetLastError();
}

template <typename T>
cudaError_t dynamic_conv_backward(const T* grad_out, const T* image, const T* kernel, T* grad_image,
                                  T* grad_kernel, DcShape g, cudaStream_t stream) {
  if (!valid(g)) return cudaErrorInvalidValue;
  const int64_t taps = g.k * g.k * g.s * g.s, kc = g.per_channel ? g.C * taps : taps;
  const int64_t nk = g.N * kc * g.H * g.W, ni = g.N * g.C * g.H * g.W;
  if (nk > 0) FL_LAUNCH(dc_grad_kernel_kernel<T>, grid_for(nk), kThreads, 0, stream, grad_out, image, grad_kernel, g);
  if (ni > 0) FL_LAUNCH(dc_grad_image_kernel<T>, grid_for(ni), kThreads, 0, stream, grad_out, kernel, grad_image, g);
  return cudaGetLastError();
}

template cudaError_t dynamic_conv_forward<float>(const float*, const float*, float*, DcShape, cudaStream_t);
template cudaError_t dynamic_conv_forward<double>(const double*, const double*, double*, DcShape, cudaStream_t);
template cudaError_t dynamic_conv_backward<float>(const float*, const float*, const float*, float*, float*,
                                                  DcShape, cudaStream_t);
template cudaError_t dynamic_conv_backward<double>(const double*, const double*, const double*, double*,
                                                   double*, DcShape, cudaStream_t);

}  // namespace cuda
}  // namespace fastliif
