// Fused LIIF query on CPU: nearest 4-corner sampling, first-layer projection gather,
// hidden layers and the area-weighted ensemble, one tile of queries at a time.
//
// The (B*Q x hidden) activations of the reference never exist: a thread holds the
// activations of one tile (kTile queries x 4 corners) and the hidden layers run as small
// GEMMs on them (ATen's BLAS, single-threaded inside the parallel region). The last layer
// is applied once per query to the area-weighted mix of the corner states (it is affine
// and the weights sum to one). Backward recomputes the tile forward, backpropagates in
// the same pass and accumulates parameter and projection gradients per thread.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../index_math.h"
#include "../op_checks.h"

namespace fastliif {
namespace {

#ifndef FASTLIIF_CPU_TILE
#define FASTLIIF_CPU_TILE 128
#endif
constexpr int64_t kTile = FASTLIIF_CPU_TILE;  // queries per tile: 4*128 rows x 256 fp32 = 512 KiB per layer

using im::Corners;

// d *= (a > 0): backward of a ReLU whose output is a (PyTorch's convention at 0).
template <typename T>
inline void relu_backward_inplace(T* __restrict d, const T* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = im::relu_grad(d[i], a[i]);
}

// Everything a tile needs, read-only and shared by all threads.
template <typename T>
struct Problem {
  const T* proj;      // (B*h*w, n1)
  const T* coord;     // (B*Q, 2)
  const T* cell;      // (B*Q, 2) or nullptr
  const T* w_rel_t;   // (nrel, n1): transposed first-layer rel columns
  const T* b1;        // (n1)
  std::vector<at::Tensor> weights, biases;  // remaining layers, contiguous
  int64_t B, Q, h, w, n1, nrel;
  bool ensemble;
  int nc;  // corners per query
  at::TensorOptions opts;
};

// Per-thread scratch for one tile.
template <typename T>
struct Scratch {
  std::vector<Corners<T>> corners;
  at::Tensor rel;               // (rows, nrel) first-layer rel features, kept for dW_rel
  std::vector<at::Tensor> act;  // act[l]: (rows, width_l) activations entering layer l+1
  at::Tensor mix;               // (kTile, width_last): area-weighted mix of corner states

  explicit Scratch(const Problem<T>& p) : corners(kTile) {
    const int64_t rows = p.nc * kTile;
    rel = at::empty({rows, p.nrel}, p.opts);
    act.push_back(at::empty({rows, p.n1}, p.opts));
    // the last layer's output is never materialised per corner
    for (size_t l = 0; l + 1 < p.weights.size(); ++l)
      act.push_back(at::empty({rows, p.weights[l].size(0)}, p.opts));
    mix = at::empty({kTile, act.back().size(1)}, p.opts);
  }
};

// Tile forward up to the mixed last hidden state. Fills s.corners, s.rel, s.act, s.mix.
// With no layer after the first, mix holds the mixed first-layer output (no ReLU).
template <typename T>
void tile_forward(const Problem<T>& p, int64_t q0, int64_t tq, Scratch<T>& s) {
  const int64_t rows = p.nc * tq, n1 = p.n1, nrel = p.nrel;
  const bool relu_first = !p.weights.empty();
  T* rel = s.rel.template data_ptr<T>();
  T* a0 = s.act[0].template data_ptr<T>();
  for (int64_t q = 0; q < tq; ++q) {
    const int64_t gq = q0 + q;
    Corners<T>& k = s.corners[q];
    im::query_corners<T>(p.coord[2 * gq], p.coord[2 * gq + 1], p.h, p.w, p.ensemble, k);
    for (int t = 0; t < p.nc; ++t) {
      const int64_t r = t * tq + q;
      T f[4] = {k.rel[t][0], k.rel[t][1], T(0), T(0)};
      if (nrel == 4) {
        f[2] = im::rel_cell(p.cell[2 * gq], p.h);
        f[3] = im::rel_cell(p.cell[2 * gq + 1], p.w);
      }
      for (int64_t j = 0; j < nrel; ++j) rel[r * nrel + j] = f[j];
      const T* __restrict src = p.proj + (gq / p.Q * p.h * p.w + k.cell[t]) * n1;
      T* __restrict dst = a0 + r * n1;
      for (int64_t c = 0; c < n1; ++c) dst[c] = src[c] + p.b1[c];
      for (int64_t j = 0; j < nrel; ++j) {
        const T fj = f[j];
        const T* __restrict wj = p.w_rel_t + j * n1;
        for (int64_t c = 0; c < n1; ++c) dst[c] += wj[c] * fj;
      }
      if (relu_first)
        for (int64_t c = 0; c < n1; ++c) dst[c] = im::relu(dst[c]);
    }
  }
  const int64_t nl = static_cast<int64_t>(p.weights.size());
  for (int64_t l = 0; l + 1 < nl; ++l) {
    at::Tensor out = s.act[l + 1].narrow(0, 0, rows);
    at::addmm_out(out, p.biases[l], s.act[l].narrow(0, 0, rows), p.weights[l].t());
    out.clamp_min_(0);
  }
  const at::Tensor& last = s.act.back();
  const int64_t width = last.size(1);
  const T* a = last.template data_ptr<T>();
  T* mix = s.mix.template data_ptr<T>();
  for (int64_t q = 0; q < tq; ++q) {
    T* __restrict m = mix + q * width;
    const Corners<T>& k = s.corners[q];
    for (int64_t c = 0; c < width; ++c) m[c] = a[q * width + c] * k.weight[0];
    for (int t = 1; t < p.nc; ++t) {
      const T wt = k.weight[t];
      const T* __restrict at_ = a + (t * tq + q) * width;
      for (int64_t c = 0; c < width; ++c) m[c] += at_[c] * wt;
    }
  }
}

// Checked operands in the layout the kernels read (contiguous, w_rel transposed), with
// internal ATen calls kept out of autograd.
struct Operands {
  at::Tensor proj, coord, cell, w_rel_t, b1;  // cell undefined without cell_decode
  std::vector<at::Tensor> weights, biases;
  bool ensemble, cell_decode;
  int64_t B, Q, n1, out_dim;

  Operands(const at::Tensor& proj_in, const at::Tensor& coord_in,
           const std::optional<at::Tensor>& cell_in, const at::Tensor& w_rel,
           const at::Tensor& b1_in, at::TensorList weights_in, at::TensorList biases_in,
           bool local_ensemble, bool decode_cell) {
    check_liif_inputs(proj_in, coord_in, cell_in, w_rel, b1_in, weights_in, biases_in, decode_cell, kCpu);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    proj = proj_in.contiguous();
    coord = coord_in.contiguous();
    if (decode_cell) cell = cell_in->contiguous();
    w_rel_t = w_rel.t().contiguous();
    b1 = b1_in.contiguous();
    for (const auto& W : weights_in) weights.push_back(W.contiguous());
    for (const auto& b : biases_in) biases.push_back(b.contiguous());
    ensemble = local_ensemble;
    cell_decode = decode_cell;
    B = proj.size(0);
    Q = coord.size(1);
    n1 = proj.size(3);
    out_dim = weights.empty() ? n1 : weights.back().size(0);
  }
};

template <typename T>
Problem<T> make_problem(const Operands& o) {
  Problem<T> p;
  p.proj = o.proj.data_ptr<T>();
  p.coord = o.coord.data_ptr<T>();
  p.cell = o.cell_decode ? o.cell.data_ptr<T>() : nullptr;
  p.w_rel_t = o.w_rel_t.data_ptr<T>();
  p.b1 = o.b1.data_ptr<T>();
  p.weights = o.weights;
  p.biases = o.biases;
  p.B = o.B;
  p.h = o.proj.size(1);
  p.w = o.proj.size(2);
  p.n1 = o.n1;
  p.Q = o.Q;
  p.nrel = o.cell_decode ? 4 : 2;
  p.ensemble = o.ensemble;
  p.nc = o.ensemble ? 4 : 1;
  p.opts = o.proj.options();
  return p;
}

at::Tensor liif_query_core_cpu(const at::Tensor& proj_in, const at::Tensor& coord_in,
                               const std::optional<at::Tensor>& cell_in,
                               const at::Tensor& w_rel, const at::Tensor& b1_in,
                               at::TensorList weights, at::TensorList biases,
                               bool local_ensemble, bool cell_decode,
                               c10::string_view /*precision: exact in the tensors' dtype on CPU*/) {
  const Operands o(proj_in, coord_in, cell_in, w_rel, b1_in, weights, biases, local_ensemble,
                   cell_decode);
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // internal ATen calls are not recorded
  const int64_t B = o.B, Q = o.Q, out_dim = o.out_dim;
  at::Tensor out = at::empty({B, Q, out_dim}, o.proj.options());
  if (B * Q == 0) return out;
  at::Tensor out2d = out.view({B * Q, out_dim});

  AT_DISPATCH_FLOATING_TYPES(o.proj.scalar_type(), "liif_query_core_cpu", [&] {
    const auto p = make_problem<scalar_t>(o);
    const int64_t ntiles = (B * Q + kTile - 1) / kTile;
    at::parallel_for(0, ntiles, 1, [&](int64_t begin, int64_t end) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;  // thread-local: set per worker
      Scratch<scalar_t> s(p);
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t q0 = tile * kTile, tq = std::min(kTile, B * Q - q0);
        tile_forward(p, q0, tq, s);
        at::Tensor dst = out2d.narrow(0, q0, tq);
        at::Tensor mix = s.mix.narrow(0, 0, tq);
        if (p.weights.empty()) {
          dst.copy_(mix);
        } else {
          at::addmm_out(dst, p.biases.back(), mix, p.weights.back().t());
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>
liif_query_core_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& proj_in,
                             const at::Tensor& coord_in, const std::optional<at::Tensor>& cell_in,
                             const at::Tensor& w_rel, const at::Tensor& b1_in,
                             at::TensorList weights, at::TensorList biases, bool local_ensemble,
                             bool cell_decode, c10::string_view /*precision*/) {
  const Operands o(proj_in, coord_in, cell_in, w_rel, b1_in, weights, biases, local_ensemble,
                   cell_decode);
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // internal ATen calls are not recorded
  const at::Tensor& proj = o.proj;
  const int64_t B = o.B, Q = o.Q, n1 = o.n1, out_dim = o.out_dim;
  const int64_t nrel = cell_decode ? 4 : 2, nl = static_cast<int64_t>(weights.size());
  TORCH_CHECK(grad_out_in.dim() == 3 && grad_out_in.size(0) == B && grad_out_in.size(1) == Q &&
                  grad_out_in.size(2) == out_dim,
              "liif_query_core_backward: grad_out must be (", B, ", ", Q, ", ", out_dim, ")");
  TORCH_CHECK(grad_out_in.scalar_type() == proj.scalar_type(),
              "liif_query_core_backward: grad_out dtype mismatch");
  const at::Tensor grad_out = grad_out_in.contiguous().view({B * Q, out_dim});

  // One accumulator set per thread (parameter grads are small; proj grads are not, so
  // only the threads that actually run allocate theirs).
  const int nthreads = at::get_num_threads();
  std::vector<at::Tensor> g_proj(nthreads), g_wrel(nthreads), g_b1(nthreads);
  std::vector<std::vector<at::Tensor>> g_w(nthreads), g_b(nthreads);

  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "liif_query_core_backward_cpu", [&] {
    using T = scalar_t;
    const auto p = make_problem<T>(o);
    const int64_t ntiles = (B * Q + kTile - 1) / kTile;
    at::parallel_for(0, ntiles, 1, [&](int64_t begin, int64_t end) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;  // thread-local: set per worker
      const int tid = at::get_thread_num();
      Scratch<T> s(p);
      at::Tensor gp = at::zeros({proj.numel() / n1, n1}, p.opts);
      at::Tensor gwr = at::zeros({n1, nrel}, p.opts), gb1 = at::zeros({n1}, p.opts);
      std::vector<at::Tensor> gw, gb;
      for (int64_t l = 0; l < nl; ++l) {
        gw.push_back(at::zeros_like(p.weights[l]));
        gb.push_back(at::zeros_like(p.biases[l]));
      }
      const int64_t rows_max = p.nc * kTile;
      // d(pre-activation) of the current layer, sized for the widest layer
      int64_t wmax = n1;
      for (const auto& a : s.act) wmax = std::max(wmax, a.size(1));
      at::Tensor dz = at::empty({rows_max * wmax}, p.opts);
      at::Tensor dprev = at::empty({rows_max * wmax}, p.opts);
      at::Tensor dmix = at::empty({kTile, s.mix.size(1)}, p.opts);
      T* gpp = gp.data_ptr<T>();

      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t q0 = tile * kTile, tq = std::min(kTile, B * Q - q0);
        const int64_t rows = p.nc * tq;
        tile_forward(p, q0, tq, s);
        const at::Tensor g = grad_out.narrow(0, q0, tq);
        // gradient w.r.t. the mixed state
        at::Tensor dm = dmix.narrow(0, 0, tq);
        if (nl == 0) {
          dm.copy_(g);
        } else {
          gw[nl - 1].addmm_(g.t(), s.mix.narrow(0, 0, tq));
          gb[nl - 1].add_(g.sum(0));
          at::mm_out(dm, g, p.weights[nl - 1]);
        }
        // spread it to the corners (weights are constants: coord gets no gradient),
        // through the ReLU of the last hidden layer when there is one
        const at::Tensor& a_last = s.act.back();
        const int64_t width = a_last.size(1);
        at::Tensor dz_t = dz.narrow(0, 0, rows * width).view({rows, width});
        {
          const T* a = a_last.data_ptr<T>();
          const T* dmp = dm.data_ptr<T>();
          T* d = dz_t.data_ptr<T>();
          const bool masked = nl > 0;
          for (int64_t q = 0; q < tq; ++q) {
            for (int t = 0; t < p.nc; ++t) {
              const T wt = s.corners[q].weight[t];
              const int64_t r = t * tq + q;
              for (int64_t c = 0; c < width; ++c) {
                const T v = dmp[q * width + c] * wt;
                d[r * width + c] = masked ? im::relu_grad(v, a[r * width + c]) : v;
              }
            }
          }
        }
        // hidden layers, last to first: act[l+1] = relu(act[l] @ W[l]^T + b[l])
        for (int64_t l = nl - 2; l >= 0; --l) {
          const at::Tensor a_in = s.act[l].narrow(0, 0, rows);
          gw[l].addmm_(dz_t.t(), a_in);
          gb[l].add_(dz_t.sum(0));
          const int64_t win = a_in.size(1);
          at::Tensor dp = dprev.narrow(0, 0, rows * win).view({rows, win});
          at::mm_out(dp, dz_t, p.weights[l]);
          relu_backward_inplace(dp.data_ptr<T>(), a_in.data_ptr<T>(), rows * win);
          std::swap(dz, dprev);
          dz_t = dp;
        }
        // first layer: proj rows, rel columns, bias
        gwr.addmm_(dz_t.t(), s.rel.narrow(0, 0, rows));
        gb1.add_(dz_t.sum(0));
        const T* d = dz_t.data_ptr<T>();
        for (int64_t q = 0; q < tq; ++q) {
          for (int t = 0; t < p.nc; ++t) {
            T* __restrict dst = gpp + ((q0 + q) / Q * p.h * p.w + s.corners[q].cell[t]) * n1;
            const T* __restrict src = d + (t * tq + q) * n1;
            for (int64_t c = 0; c < n1; ++c) dst[c] += src[c];
          }
        }
      }
      g_proj[tid] = gp;
      g_wrel[tid] = gwr;
      g_b1[tid] = gb1;
      g_w[tid] = gw;
      g_b[tid] = gb;
    });
  });

  auto reduce = [](std::vector<at::Tensor>& parts, const at::Tensor& like) {
    at::Tensor total;
    for (auto& t : parts) {
      if (!t.defined()) continue;
      if (!total.defined()) total = t;
      else total.add_(t);
    }
    return total.defined() ? total : at::zeros(like.sizes(), like.options());
  };
  at::Tensor grad_proj = reduce(g_proj, proj).view(proj.sizes());
  at::Tensor grad_wrel = reduce(g_wrel, w_rel);
  at::Tensor grad_b1 = reduce(g_b1, o.b1);
  std::vector<at::Tensor> grad_w, grad_b;
  for (int64_t l = 0; l < nl; ++l) {
    std::vector<at::Tensor> pw, pb;
    for (int i = 0; i < nthreads; ++i) {
      if (!g_w[i].empty()) {
        pw.push_back(g_w[i][l]);
        pb.push_back(g_b[i][l]);
      }
    }
    grad_w.push_back(reduce(pw, weights[l]));
    grad_b.push_back(reduce(pb, biases[l]));
  }
  return {grad_proj, grad_wrel, grad_b1, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastliif, CPU, m) {
  m.impl("liif_query_core", &liif_query_core_cpu);
  m.impl("liif_query_core_backward", &liif_query_core_backward_cpu);
}

}  // namespace fastliif
