// Per-pixel dynamic convolution on CPU (UDVD's PixelConv, DESIGN.md section 5), one pass.
//
//   out[n, c, y*s+i, x*s+j] = sum_{a,b<k} img[n, c, y+a-p, x+b-p] * ker[n, m + (b*k+a)*s*s + i*s+j, y, x]
//
// m = 0 (shared kernel) or c*k*k*s*s (per-channel). Work is split by (n, block of output rows)
// for the forward, (n, kernel channel) for d(kernel) and (n, block of input rows) for
// d(image): every output element is written by exactly one thread, so the backward needs no
// atomics (CARAFE's gathers). x is innermost so kernel and image rows stream contiguously.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../index_math.h"
#include "../op_checks.h"

namespace fastliif {
namespace {

// Columns x of a row for which x + dx stays inside [0, W).
inline void valid_range(int64_t W, int64_t dx, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, -dx);
  hi = std::min<int64_t>(W, W - dx);
}

// Kernel row of (tap*s*s + sub) for channel c at row y (shared mode: the same for every c).
// The kernel is (N, taps [* C], H, W): the k*k*s*s rows a pixel row needs lie H*W apart, so
// visiting them row by row touches a new page per row (TLB misses, no prefetch). The loops
// below therefore take blocks of ROWS pixel rows (forward, d(image)) or whole planes
// (d(kernel)) per kernel channel, keep channels innermost, and never revisit a kernel row.
#define KROW(base, c, tap, sub) \
  ((base) + (n * g.kc + im::dc_kernel_channel((c), (tap), (sub), g.taps, ss, g.per_channel)) * HW + y * W)

constexpr int64_t ROWS = 8;  // pixel rows per task: 8 contiguous rows of each kernel plane

template <typename T>
void forward_rows(const Geometry& g, const T* img, const T* ker, T* out) {
  const int64_t H = g.H, W = g.W, s = g.s, ss = s * s, HW = H * W, Ws = W * s;
  const int64_t blocks = (H + ROWS - 1) / ROWS;
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(g.C * ss * ROWS * W);  // [c][sub][row][x]
    for (int64_t nb = begin; nb < end; ++nb) {
      const int64_t n = nb / blocks, y0 = (nb % blocks) * ROWS, y1 = std::min(H, y0 + ROWS);
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t a = 0; a < g.k; ++a) {
        for (int64_t b = 0; b < g.k; ++b) {
          const int64_t dx = b - g.p;
          int64_t lo, hi;
          valid_range(W, dx, lo, hi);
          const int64_t tap = im::dc_tap(a, b, g.k);
          for (int64_t sub = 0; sub < ss; ++sub) {
            for (int64_t c = 0; c < g.C; ++c) {
              for (int64_t y = y0; y < y1; ++y) {
                const int64_t yy = y + a - g.p;
                if (yy < 0 || yy >= H) continue;
                const T* __restrict krow = KROW(ker, c, tap, sub);
                const T* __restrict irow = img + ((n * g.C + c) * H + yy) * W;
                T* __restrict arow = acc.data() + ((c * ss + sub) * ROWS + (y - y0)) * W;
                for (int64_t x = lo; x < hi; ++x) arow[x] += irow[x + dx] * krow[x];
              }
            }
          }
        }
      }
      // pixel_shuffle on the way out: sub-pixel (i, j) of column x goes to x*s + j of row y*s + i
      for (int64_t c = 0; c < g.C; ++c) {
        for (int64_t y = y0; y < y1; ++y) {
          for (int64_t i = 0; i < s; ++i) {
            T* orow = out + ((n * g.C + c) * H * s + y * s + i) * Ws;
            for (int64_t j = 0; j < s; ++j) {
              const T* arow = acc.data() + ((c * ss + im::dc_sub(i, j, s)) * ROWS + (y - y0)) * W;
              for (int64_t x = 0; x < W; ++x) orow[x * s + j] = arow[x];
            }
          }
        }
      }
    }
  });
}

// d(kernel): one task per (n, kernel channel), writing its H*W plane front to back in the
// kernel's own layout and reading the matching image and grad planes contiguously; a dot over
// channels (shared) or one channel (per-channel). dsub is grad_out pixel-unshuffled to
// (N, C*s*s, H, W). Every kernel-gradient element is written by exactly one task.
template <typename T>
void grad_kernel_planes(const Geometry& g, const T* img, const T* dsub, T* dker) {
  const int64_t H = g.H, W = g.W, ss = g.s * g.s, HW = H * W;
  at::parallel_for(0, g.N * g.kc, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / g.kc, ch = t % g.kc;  // ch = group * taps + tap * ss + sub
      const int64_t group = ch / g.taps, tapsub = ch % g.taps;
      const int64_t tap = tapsub / ss, sub = tapsub % ss;
      const int64_t a = im::dc_tap_row(tap, g.k), b = im::dc_tap_col(tap, g.k), dx = b - g.p;
      int64_t lo, hi;
      valid_range(W, dx, lo, hi);
      const int64_t c0 = g.per_channel ? group : 0, c1 = g.per_channel ? group + 1 : g.C;
      T* __restrict plane = dker + (n * g.kc + ch) * HW;
      for (int64_t y = 0; y < H; ++y) {
        T* __restrict krow = plane + y * W;
        std::fill_n(krow, W, T(0));
        const int64_t yy = y + a - g.p;
        if (yy < 0 || yy >= H) continue;
        for (int64_t c = c0; c < c1; ++c) {
          const T* __restrict drow = dsub + ((n * g.C + c) * ss + sub) * HW + y * W;
          const T* __restrict irow = img + ((n * g.C + c) * H + yy) * W;
          for (int64_t x = lo; x < hi; ++x) krow[x] += drow[x] * irow[x + dx];
        }
      }
    }
  });
}

// d(image): per (n, block of ROWS input rows), the flipped gather over taps and sub-pixels,
// all channels.
template <typename T>
void grad_image_rows(const Geometry& g, const T* ker, const T* dsub, T* dimg) {
  const int64_t H = g.H, W = g.W, s = g.s, ss = s * s, HW = H * W;
  const int64_t blocks = (H + ROWS - 1) / ROWS;
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(g.C * ROWS * W);  // [c][row][x]
    for (int64_t nb = begin; nb < end; ++nb) {
      const int64_t n = nb / blocks, yy0 = (nb % blocks) * ROWS, yy1 = std::min(H, yy0 + ROWS);
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t a = 0; a < g.k; ++a) {
        for (int64_t b = 0; b < g.k; ++b) {
          const int64_t dx = b - g.p;  // output x reads input x + dx
          int64_t lo, hi;
          valid_range(W, dx, lo, hi);
          const int64_t tap = im::dc_tap(a, b, g.k);
          for (int64_t sub = 0; sub < ss; ++sub) {
            for (int64_t c = 0; c < g.C; ++c) {
              for (int64_t yy = yy0; yy < yy1; ++yy) {
                const int64_t y = yy - a + g.p;  // output row whose tap a reads input row yy
                if (y < 0 || y >= H) continue;
                const T* __restrict krow = KROW(ker, c, tap, sub);
                const T* __restrict drow = dsub + ((n * g.C + c) * ss + sub) * HW + y * W;
                T* __restrict arow = acc.data() + (c * ROWS + (yy - yy0)) * W;
                for (int64_t x = lo; x < hi; ++x) arow[x + dx] += drow[x] * krow[x];
              }
            }
          }
        }
      }
      for (int64_t c = 0; c < g.C; ++c) {
        for (int64_t yy = yy0; yy < yy1; ++yy) {
          std::copy_n(acc.data() + (c * ROWS + (yy - yy0)) * W, W, dimg + ((n * g.C + c) * H + yy) * W);
        }
      }
    }
  });
}
#undef KROW

at::Tensor dynamic_conv_cpu(const at::Tensor& image_in, const at::Tensor& kernel_in,
                            int64_t kernel_size, int64_t scale, bool per_channel) {
  const Geometry g = geometry(image_in, kernel_in, kernel_size, scale, per_channel, kCpu);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor image = image_in.contiguous(), kernel = kernel_in.contiguous();
  at::Tensor out = at::empty({g.N, g.C, g.H * g.s, g.W * g.s}, image.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "dynamic_conv_cpu", [&] {
    forward_rows<scalar_t>(g, image.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(),
                           out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> dynamic_conv_backward_cpu(const at::Tensor& grad_out_in,
                                                             const at::Tensor& image_in,
                                                             const at::Tensor& kernel_in,
                                                             int64_t kernel_size, int64_t scale,
                                                             bool per_channel) {
  const Geometry g = geometry(image_in, kernel_in, kernel_size, scale, per_channel, kCpu);
  TORCH_CHECK(grad_out_in.dim() == 4 && grad_out_in.size(0) == g.N && grad_out_in.size(1) == g.C &&
                  grad_out_in.size(2) == g.H * g.s && grad_out_in.size(3) == g.W * g.s,
              "dynamic_conv_backward: grad_out must be (", g.N, ", ", g.C, ", ", g.H * g.s, ", ",
              g.W * g.s, "), got ", grad_out_in.sizes());
  TORCH_CHECK(grad_out_in.scalar_type() == image_in.scalar_type(),
              "dynamic_conv_backward: grad_out dtype mismatch");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor image = image_in.contiguous(), kernel = kernel_in.contiguous();
  // one pass to (N, C*s*s, H, W) so that both gathers read contiguous rows
  const at::Tensor dsub = g.s > 1 ? at::pixel_unshuffle(grad_out_in, g.s).contiguous() : grad_out_in.contiguous();
  at::Tensor grad_image = at::empty(image.sizes(), image.options());
  at::Tensor grad_kernel = at::empty(kernel.sizes(), kernel.options());
  if (image.numel() == 0 || kernel.numel() == 0) {
    return {grad_image.zero_(), grad_kernel.zero_()};
  }
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "dynamic_conv_backward_cpu", [&] {
    const scalar_t* d = dsub.data_ptr<scalar_t>();
    grad_kernel_planes<scalar_t>(g, image.data_ptr<scalar_t>(), d, grad_kernel.data_ptr<scalar_t>());
    grad_image_rows<scalar_t>(g, kernel.data_ptr<scalar_t>(), d, grad_image.data_ptr<scalar_t>());
  });
  return {grad_image, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastliif, CPU, m) {
  m.impl("dynamic_conv", &dynamic_conv_cpu);
  m.impl("dynamic_conv_backward", &dynamic_conv_backward_cpu);
}

}  // namespace fastliif
