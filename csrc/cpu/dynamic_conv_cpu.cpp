// Per-pixel dynamic convolution on CPU (UDVD's PixelConv, DESIGN.md section 5), one pass.
//
//   out[n, c, y*s+i, x*s+j] = sum_{a,b<k} img[n, c, y+a-p, x+b-p] * ker[n, m + (b*k+a)*s*s + i*s+j, y, x]
//
// m = 0 (shared kernel) or c*k*k*s*s (per-channel). Work is split by (n, output row y) for
// the forward and d(kernel), by (n, input row) for d(image): every output element is
// written by exactly one thread, so the backward needs no atomics (CARAFE's gathers).
// Rows are processed with x innermost so kernel and image rows stream contiguously.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace fastliif {
namespace {

struct Geometry {
  int64_t N, C, H, W, k, s, p, taps, kc;  // taps = k*k*s*s, kc = kernel channels
  bool per_channel;
};

Geometry geometry(const at::Tensor& image, const at::Tensor& kernel, int64_t k, int64_t s,
                  bool per_channel) {
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
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "dynamic_conv (cpu): float32 or float64 only, got ", image.scalar_type());
  TORCH_CHECK(image.device().is_cpu() && kernel.device().is_cpu(),
              "dynamic_conv (cpu): tensors must be on the CPU");
  return g;
}

// Columns x of a row for which x + dx stays inside [0, W).
inline void valid_range(int64_t W, int64_t dx, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, -dx);
  hi = std::min<int64_t>(W, W - dx);
}

template <typename T>
void forward_rows(const Geometry& g, const T* img, const T* ker, T* out) {
  const int64_t H = g.H, W = g.W, s = g.s, ss = s * s, HW = H * W, Ws = W * s;
  at::parallel_for(0, g.N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(ss * W);
    for (int64_t ny = begin; ny < end; ++ny) {
      const int64_t n = ny / H, y = ny % H;
      for (int64_t c = 0; c < g.C; ++c) {
        std::fill(acc.begin(), acc.end(), T(0));
        const T* kbase = ker + (n * g.kc + (g.per_channel ? c * g.taps : 0)) * HW + y * W;
        for (int64_t a = 0; a < g.k; ++a) {
          const int64_t yy = y + a - g.p;
          if (yy < 0 || yy >= H) continue;
          const T* irow = img + ((n * g.C + c) * H + yy) * W;
          for (int64_t b = 0; b < g.k; ++b) {
            const int64_t dx = b - g.p;
            int64_t lo, hi;
            valid_range(W, dx, lo, hi);
            const int64_t tap = b * g.k + a;
            for (int64_t sub = 0; sub < ss; ++sub) {
              const T* __restrict krow = kbase + (tap * ss + sub) * HW;
              T* __restrict arow = acc.data() + sub * W;
              for (int64_t x = lo; x < hi; ++x) arow[x] += irow[x + dx] * krow[x];
            }
          }
        }
        // pixel_shuffle on the way out: sub-pixel (i, j) of column x goes to x*s + j of row y*s + i
        for (int64_t i = 0; i < s; ++i) {
          T* orow = out + ((n * g.C + c) * H * s + y * s + i) * Ws;
          for (int64_t j = 0; j < s; ++j) {
            const T* arow = acc.data() + (i * s + j) * W;
            for (int64_t x = 0; x < W; ++x) orow[x * s + j] = arow[x];
          }
        }
      }
    }
  });
}

// The s*s sub-pixel rows of output row y (of one image plane) as contiguous rows of W:
// sub[(i*s + j)*W + x] = plane[(y*s + i)*W*s + x*s + j] (the inverse of pixel_shuffle).
template <typename T>
inline void unshuffle_row(const T* plane, int64_t y, int64_t W, int64_t s, T* sub) {
  for (int64_t i = 0; i < s; ++i) {
    const T* row = plane + (y * s + i) * W * s;
    for (int64_t j = 0; j < s; ++j) {
      T* dst = sub + (i * s + j) * W;
      for (int64_t x = 0; x < W; ++x) dst[x] = row[x * s + j];
    }
  }
}

// d(kernel): per (n, y) row, a dot over channels (shared) or per channel.
template <typename T>
void grad_kernel_rows(const Geometry& g, const T* img, const T* dout, T* dker) {
  const int64_t H = g.H, W = g.W, s = g.s, ss = s * s, HW = H * W, Ws = W * s;
  at::parallel_for(0, g.N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dsub(ss * W);
    for (int64_t ny = begin; ny < end; ++ny) {
      const int64_t n = ny / H, y = ny % H;
      for (int64_t ch = 0; ch < g.kc; ++ch) std::fill_n(dker + (n * g.kc + ch) * HW + y * W, W, T(0));
      for (int64_t c = 0; c < g.C; ++c) {
        unshuffle_row(dout + (n * g.C + c) * HW * ss, y, W, s, dsub.data());
        T* kbase = dker + (n * g.kc + (g.per_channel ? c * g.taps : 0)) * HW + y * W;
        for (int64_t a = 0; a < g.k; ++a) {
          const int64_t yy = y + a - g.p;
          if (yy < 0 || yy >= H) continue;
          const T* irow = img + ((n * g.C + c) * H + yy) * W;
          for (int64_t b = 0; b < g.k; ++b) {
            const int64_t dx = b - g.p;
            int64_t lo, hi;
            valid_range(W, dx, lo, hi);
            const int64_t tap = b * g.k + a;
            for (int64_t sub = 0; sub < ss; ++sub) {
              const T* __restrict drow = dsub.data() + sub * W;
              T* __restrict krow = kbase + (tap * ss + sub) * HW;
              for (int64_t x = lo; x < hi; ++x) krow[x] += drow[x] * irow[x + dx];
            }
          }
        }
      }
    }
  });
}

// d(image): per (n, c, input row yy), the flipped gather over taps and sub-pixels.
template <typename T>
void grad_image_rows(const Geometry& g, const T* ker, const T* dout, T* dimg) {
  const int64_t H = g.H, W = g.W, s = g.s, ss = s * s, HW = H * W, Ws = W * s;
  at::parallel_for(0, g.N * g.C * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dsub(ss * W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t nc = row / H, yy = row % H, n = nc / g.C, c = nc % g.C;
      T* __restrict drow_img = dimg + row * W;
      std::fill_n(drow_img, W, T(0));
      const T* kbase = ker + (n * g.kc + (g.per_channel ? c * g.taps : 0)) * HW;
      for (int64_t a = 0; a < g.k; ++a) {
        const int64_t y = yy - a + g.p;  // output row whose tap a reads input row yy
        if (y < 0 || y >= H) continue;
        unshuffle_row(dout + nc * HW * ss, y, W, s, dsub.data());
        for (int64_t b = 0; b < g.k; ++b) {
          const int64_t dx = b - g.p;  // output x reads input x + dx
          int64_t lo, hi;
          valid_range(W, dx, lo, hi);
          const int64_t tap = b * g.k + a;
          for (int64_t sub = 0; sub < ss; ++sub) {
            const T* __restrict drow = dsub.data() + sub * W;
            const T* __restrict krow = kbase + (tap * ss + sub) * HW + y * W;
            for (int64_t x = lo; x < hi; ++x) drow_img[x + dx] += drow[x] * krow[x];
          }
        }
      }
    }
  });
}

at::Tensor dynamic_conv_cpu(const at::Tensor& image_in, const at::Tensor& kernel_in,
                            int64_t kernel_size, int64_t scale, bool per_channel) {
  const Geometry g = geometry(image_in, kernel_in, kernel_size, scale, per_channel);
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
  const Geometry g = geometry(image_in, kernel_in, kernel_size, scale, per_channel);
  TORCH_CHECK(grad_out_in.dim() == 4 && grad_out_in.size(0) == g.N && grad_out_in.size(1) == g.C &&
                  grad_out_in.size(2) == g.H * g.s && grad_out_in.size(3) == g.W * g.s,
              "dynamic_conv_backward: grad_out must be (", g.N, ", ", g.C, ", ", g.H * g.s, ", ",
              g.W * g.s, "), got ", grad_out_in.sizes());
  TORCH_CHECK(grad_out_in.scalar_type() == image_in.scalar_type(),
              "dynamic_conv_backward: grad_out dtype mismatch");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor image = image_in.contiguous(), kernel = kernel_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  at::Tensor grad_image = at::empty(image.sizes(), image.options());
  at::Tensor grad_kernel = at::empty(kernel.sizes(), kernel.options());
  if (image.numel() == 0 || kernel.numel() == 0) {
    return {grad_image.zero_(), grad_kernel.zero_()};
  }
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "dynamic_conv_backward_cpu", [&] {
    const scalar_t* dout = grad_out.data_ptr<scalar_t>();
    grad_kernel_rows<scalar_t>(g, image.data_ptr<scalar_t>(), dout, grad_kernel.data_ptr<scalar_t>());
    grad_image_rows<scalar_t>(g, kernel.data_ptr<scalar_t>(), dout, grad_image.data_ptr<scalar_t>());
  });
  return {grad_image, grad_kernel};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastliif, CPU, m) {
  m.impl("dynamic_conv", &dynamic_conv_cpu);
  m.impl("dynamic_conv_backward", &dynamic_conv_backward_cpu);
}

}  // namespace fastliif
