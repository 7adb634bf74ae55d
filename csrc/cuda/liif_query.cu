// Fused LIIF query on CUDA (DESIGN.md section 4), forward and backward.
//
// One thread block owns a tile of R query-corner rows (R <= 32: 8 queries x 4 corners with the
// local ensemble) at a time, looping over tiles (persistent grid). Per tile it
//   1. computes each query's corners with the CPU kernel's index math (csrc/index_math.h),
//   2. gathers the corners' rows of the first-layer projection P and adds the rank-2/4
//      rel_coord/rel_cell term and the bias (coalesced: consecutive threads, consecutive columns),
//   3. runs the hidden layers on the tile's activations, which stay in shared memory for
//      all layers (no global scratch): weights stream through shared memory in chunks of
//      kKc input columns with cp.async, double-buffered, and each thread accumulates a
//      4-row x 8-column register tile with FFMA (exact fp32),
//   4. mixes the last hidden state of the corners with the area weights and applies the last
//      layer once per query (one warp per (query, output) dot product).
// Backward recomputes the tile (keeping every layer's activations in shared memory), then
// backpropagates in the same block: the last layer and the mix per query, each hidden layer
// as a shared-memory GEMM against the untransposed weights masked by the ReLU, and scatters
// the first-layer gradient into dP with atomic adds. Parameter gradients accumulate in a
// per-block slice of a split buffer (plain read-modify-write: a block owns its slice) and a
// second kernel sums the slices in block order: deterministic, no atomics.
//
// Precision (LiifProblem::precision): "ieee" runs the hidden-layer GEMMs (forward, and the
// backward's d(input) products) with exact fp32 FFMA; "tf32", "bf16", "fp16" run them on tensor
// cores (mma.sync, operands rounded from the fp32 activations and weights as fragments are
// loaded, fp32 accumulation). The first layer, the corner mix, the last layer and the parameter
// gradients (dW = dz^T a) are fp32 FFMA in every mode.
#ifndef FASTLIIF_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include "../index_math.h"
#include "kernels.h"

namespace fastliif {
namespace cuda {
namespace {

constexpr int kThreads = 256;      // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRows = 32;       // query-corner rows per tile
constexpr int kRowsPerThread = 4;  // register tile: 4 rows x 8 columns
constexpr int kColsPerThread = 8;
constexpr int kKc = 32;                   // input columns per staged weight chunk
constexpr int kStageLd = kLiifMaxWidth + 1;  // +1 float: lanes of a warp hit distinct banks when staging

// ------------------------------------------------------------------ cp.async helpers (sm_80+)

#ifndef FASTLIIF_CUDA_EMULATION
__device__ __forceinline__ void cp_async4(float* smem, const float* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#else  // CPU emulation (tests): a synchronous copy
inline void cp_async4(float* smem, const float* gmem) { *smem = *gmem; }
inline void cp_async_commit() {}
template <int N>
inline void cp_async_wait() {}
#endif

// ------------------------------------------------------------------ shared-memory layout

// Offsets (in floats) of a tile's buffers in dynamic shared memory; built on the host and the
// device alike so the launcher sizes exactly what the kernel uses.
struct Layout {
  int rows, tq, ld;       // rows per tile, queries per tile, leading dimension of activations
  int nact;               // activation buffers (forward: 2 ping-pong; backward: one per layer + 2)
  int act, stage, feat, weight, cell, total;  // offsets; cell is int64 (8-byte aligned)

  __host__ __device__ Layout(const LiifProblem& p, int rows_, bool backward) {
    rows = rows_;
    tq = rows / (p.ensemble ? 4 : 1);
    ld = 0;
    for (int l = 0; l <= p.nl; ++l) ld = ld > p.width[l] ? ld : p.width[l];
    ld += 4;  // rows 4 banks apart: the 8 rows of an mma fragment load hit distinct banks
    const int layers = p.nl > 0 ? p.nl : 1;  // act[0] .. act[nl-1] are kept for the backward
    nact = backward ? layers + 2 : 2;
    act = 0;
    stage = act + nact * rows * ld;
    feat = stage + 2 * kKc * kStageLd;
    weight = feat + rows * 4;
    cell = weight + rows;
    cell += cell & 1;  // 8-byte alignment for the int64 cell rows
    total = cell + 2 * rows;
  }
  __host__ __device__ size_t bytes() const { return static_cast<size_t>(total) * sizeof(float); }
};

// ------------------------------------------------------------------ block-wide GEMM (FFMA)

// out[r][n] = epilogue(sum_k in[r][k] * B(k, n)) for r < rows, n < N, with
// B(k, n) = W[n*K + k] (w_nk: PyTorch's (N, K) Linear weight, the forward) or W[k*N + n]
// (the backward's d(input) = d(output) @ W). Epilogue: + bias (if any), then ReLU (relu),
// or the ReLU mask of `mask` (backward). in/out/mask: shared memory, leading dimension ld.
// Warp w owns rows (w % rgroups)*4 .. +3 and a 1/csplit share of the column blocks, so all 8
// warps work for any rows in {4, 8, 16, 32}; lanes take columns lane + 32*j.
__device__ void load_chunk(int k0, float* buf, int K, int N, const float* __restrict__ W, bool w_nk) {
  // buf[kk][n] = B(k0 + kk, n), zero past K
  const int tid = threadIdx.x;
  if (w_nk) {
    for (int idx = tid; idx < N * kKc; idx += kThreads) {
      const int n = idx / kKc, kk = idx % kKc, k = k0 + kk;  // consecutive threads: consecutive k
      float* dst = buf + kk * kStageLd + n;
      if (k < K) cp_async4(dst, W + static_cast<int64_t>(n) * K + k);
      else *dst = 0.f;
    }
  } else {
    for (int idx = tid; idx < N * kKc; idx += kThreads) {
      const int kk = idx / N, n = idx % N, k = k0 + kk;  // consecutive threads: consecutive n
      float* dst = buf + kk * kStageLd + n;
      if (k < K) cp_async4(dst, W + static_cast<int64_t>(k) * N + n);
      else *dst = 0.f;
    }
  }
  cp_async_commit();
}

// Streams B through `stage` in kKc-row chunks, double-buffered, calling body(chunk, k0, kmax)
// once each chunk has landed in shared memory.
template <typename Body>
__device__ __forceinline__ void stream_weights(int K, int N, const float* __restrict__ W, bool w_nk, float* stage,
                                               Body body) {
  const int nchunks = (K + kKc - 1) / kKc;
  load_chunk(0, stage, K, N, W, w_nk);
  for (int ch = 0; ch < nchunks; ++ch) {
    const float* cur = stage + (ch & 1) * kKc * kStageLd;
    if (ch + 1 < nchunks) {
      load_chunk((ch + 1) * kKc, stage + ((ch + 1) & 1) * kKc * kStageLd, K, N, W, w_nk);
      cp_async_wait<1>();  // this chunk landed; the next one is in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int k0 = ch * kKc;
    body(cur, k0, K - k0 < kKc ? K - k0 : kKc);
    __syncthreads();  // every warp is done with `cur` before it is refilled
  }
}

__device__ __forceinline__ float epilogue(float v, int r, int n, int ld, const float* bias, bool relu,
                                          const float* mask) {
  if (bias) v += bias[n];
  if (relu) v = im::relu(v);
  if (mask) v = im::relu_grad(v, mask[r * ld + n]);
  return v;
}

__device__ void gemm_ffma(const float* in, float* out, const float* mask, int ld, int rows, int K, int N,
                          const float* __restrict__ W, bool w_nk, const float* __restrict__ bias, bool relu,
                          float* stage) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int rgroups = rows / kRowsPerThread, csplit = kWarps / rgroups;
  const int r0 = (warp % rgroups) * kRowsPerThread, cs = warp / rgroups;
  const int jn = kColsPerThread / csplit;  // column blocks cs, cs + csplit, ... (< 8) of this warp

  float acc[kRowsPerThread][kColsPerThread];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) acc[i][j] = 0.f;

  stream_weights(K, N, W, w_nk, stage, [&](const float* cur, int k0, int kmax) {
    for (int kk = 0; kk < kmax; ++kk) {
      float a[kRowsPerThread], b[kColsPerThread];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) a[i] = in[(r0 + i) * ld + k0 + kk];  // warp broadcast
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) b[j] = j < jn ? cur[kk * kStageLd + lane + 32 * (cs + csplit * j)] : 0.f;
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  });
#pragma unroll
  for (int j = 0; j < kColsPerThread; ++j) {
    const int n = lane + 32 * (cs + csplit * j);
    if (j >= jn || n >= N) continue;
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) out[(r0 + i) * ld + n] = epilogue(acc[i][j], r0 + i, n, ld, bias, relu, mask);
  }
}

// ------------------------------------------------------------------ block-wide GEMM (tensor cores)

// mma.sync m16n8k8 (tf32) / m16n8k16 (bf16, fp16) with fp32 accumulation. Operands are rounded
// from the fp32 activations and staged weights as the fragments are loaded (register layouts:
// PTX ISA, "Matrix Fragments for mma.m16n8k8 / m16n8k16"); columns k >= K read as zero.
#ifndef FASTLIIF_CUDA_EMULATION  // tests/native/cuda_emu.h has software stand-ins for these three
__device__ __forceinline__ unsigned to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
template <Precision P>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  if constexpr (P == Precision::kBf16) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
  }
}

template <Precision P>
__device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  if constexpr (P == Precision::kTf32) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else if constexpr (P == Precision::kBf16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

#endif  // FASTLIIF_CUDA_EMULATION

constexpr int kMmaUnits = 8;  // (16 x 8) output tiles per warp: 2 x 32 tiles of a 32 x 256 output

// Same contract as gemm_ffma. Warp w owns the output tiles w*upw .. w*upw + upw - 1, tile u =
// (u / ntiles)-th 16-row block, (u % ntiles)-th 8-column block.
template <Precision P>
__device__ void gemm_mma(const float* in, float* out, const float* mask, int ld, int rows, int K, int N,
                         const float* __restrict__ W, bool w_nk, const float* __restrict__ bias, bool relu,
                         float* stage) {
  constexpr int KS = P == Precision::kTf32 ? 8 : 16;  // k per mma
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int ntiles = (N + 7) / 8, units = ((rows + 15) / 16) * ntiles;
  const int upw = (units + kWarps - 1) / kWarps, u0 = warp * upw;
  float acc[kMmaUnits][4];
#pragma unroll
  for (int u = 0; u < kMmaUnits; ++u) acc[u][0] = acc[u][1] = acc[u][2] = acc[u][3] = 0.f;
  stream_weights(K, N, W, w_nk, stage, [&](const float* cur, int k0, int kmax) {
    for (int ks = 0; ks < kmax; ks += KS) {
      // A element (row, col) of this k-step, zero past K (garbage columns must not reach the sum)
      auto A = [&](int row, int col) { return row < rows && ks + col < kmax ? in[row * ld + k0 + ks + col] : 0.f; };
      auto B = [&](int col, int n) { return cur[(ks + col) * kStageLd + n]; };  // zero-filled past K
#pragma unroll
      for (int u = 0; u < kMmaUnits; ++u) {
        const int unit = u0 + u;
        if (u >= upw || unit >= units) continue;
        const int m0 = (unit / ntiles) * 16, n = (unit % ntiles) * 8 + g;
        unsigned a[4], b[2];
        if constexpr (P == Precision::kTf32) {
          a[0] = to_tf32(A(m0 + g, t));
          a[1] = to_tf32(A(m0 + g + 8, t));
          a[2] = to_tf32(A(m0 + g, t + 4));
          a[3] = to_tf32(A(m0 + g + 8, t + 4));
          b[0] = to_tf32(B(t, n));
          b[1] = to_tf32(B(t + 4, n));
        } else {
          a[0] = pack2<P>(A(m0 + g, 2 * t), A(m0 + g, 2 * t + 1));
          a[1] = pack2<P>(A(m0 + g + 8, 2 * t), A(m0 + g + 8, 2 * t + 1));
          a[2] = pack2<P>(A(m0 + g, 2 * t + 8), A(m0 + g, 2 * t + 9));
          a[3] = pack2<P>(A(m0 + g + 8, 2 * t + 8), A(m0 + g + 8, 2 * t + 9));
          b[0] = pack2<P>(B(2 * t, n), B(2 * t + 1, n));
          b[1] = pack2<P>(B(2 * t + 8, n), B(2 * t + 9, n));
        }
        mma<P>(acc[u], a, b);
      }
    }
  });
#pragma unroll
  for (int u = 0; u < kMmaUnits; ++u) {
    const int unit = u0 + u;
    if (u >= upw || unit >= units) continue;
    const int m0 = (unit / ntiles) * 16, n0 = (unit % ntiles) * 8 + 2 * t;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = m0 + g + (e >> 1) * 8, n = n0 + (e & 1);
      if (r < rows && n < N) out[r * ld + n] = epilogue(acc[u][e], r, n, ld, bias, relu, mask);
    }
  }
}

// out = epilogue(in @ B) at the problem's precision: exact fp32 FFMA, or tensor cores.
__device__ void block_gemm(Precision prec, const float* in, float* out, const float* mask, int ld, int rows, int K,
                           int N, const float* __restrict__ W, bool w_nk, const float* __restrict__ bias, bool relu,
                           float* stage) {
  switch (prec) {
    case Precision::kTf32: gemm_mma<Precision::kTf32>(in, out, mask, ld, rows, K, N, W, w_nk, bias, relu, stage); break;
    case Precision::kBf16: gemm_mma<Precision::kBf16>(in, out, mask, ld, rows, K, N, W, w_nk, bias, relu, stage); break;
    case Precision::kFp16: gemm_mma<Precision::kFp16>(in, out, mask, ld, rows, K, N, W, w_nk, bias, relu, stage); break;
    default: gemm_ffma(in, out, mask, ld, rows, K, N, W, w_nk, bias, relu, stage);
  }
}

// ------------------------------------------------------------------ per-tile pieces

struct Tile {
  const LiifProblem& p;
  Layout L;
  float* smem;
  int64_t q0;  // first global query (b*Q + q) of the tile
  int tq;      // valid queries in the tile (<= L.tq)

  __device__ float* act(int i) const { return smem + L.act + i * L.rows * L.ld; }
  __device__ float* feat() const { return smem + L.feat; }      // [rows][4] rel_coord, rel_cell
  __device__ float* weight() const { return smem + L.weight; }  // [rows] ensemble weight
  __device__ int64_t* cell() const { return reinterpret_cast<int64_t*>(smem + L.cell); }  // [rows] P row
  __device__ int row(int t, int q) const { return t * L.tq + q; }
};

// Corners of the tile's queries and the first layer: act0 = [relu](P[row] + W_rel f + b1).
__device__ void first_layer(const Tile& T, float* act0) {
  const LiifProblem& p = T.p;
  const int nc = p.ensemble ? 4 : 1, tid = threadIdx.x;
  for (int q = tid; q < T.L.tq; q += kThreads) {
    im::Corners<float> k;
    const bool valid = q < T.tq;
    const int64_t gq = T.q0 + q;
    float cy = 0.f, cx = 0.f, fy = 0.f, fx = 0.f;
    if (valid) {
      cy = p.coord[2 * gq];
      cx = p.coord[2 * gq + 1];
      if (p.nrel == 4) {
        fy = im::rel_cell(p.cell[2 * gq], p.h);
        fx = im::rel_cell(p.cell[2 * gq + 1], p.w);
      }
    }
    im::query_corners(cy, cx, p.h, p.w, p.ensemble, k);
    const int64_t base = valid ? gq / p.Q * p.h * p.w : 0;
    for (int t = 0; t < nc; ++t) {
      const int r = T.row(t, q);
      T.cell()[r] = base + k.cell[t];
      T.weight()[r] = valid ? k.weight[t] : 0.f;
      float* f = T.feat() + r * 4;
      f[0] = k.rel[t][0];
      f[1] = k.rel[t][1];
      f[2] = fy;
      f[3] = fx;
    }
  }
  __syncthreads();
  const int n1 = p.width[0], ld = T.L.ld;
  const bool relu = p.nl > 0;
  for (int idx = tid; idx < T.L.rows * n1; idx += kThreads) {
    const int r = idx / n1, c = idx % n1;
    const float* f = T.feat() + r * 4;
    float v = __ldg(p.proj + T.cell()[r] * n1 + c) + __ldg(p.b1 + c);
    for (int j = 0; j < p.nrel; ++j) v += __ldg(p.w_rel + c * p.nrel + j) * f[j];
    act0[r * ld + c] = relu ? im::relu(v) : v;
  }
  __syncthreads();
}

// Forward of the hidden layers; with keep (backward) layer l's output goes to act(l+1),
// else the two buffers alternate. Returns the buffer holding the last hidden state.
__device__ float* hidden_layers(const Tile& T, bool keep) {
  const LiifProblem& p = T.p;
  float* stage = T.smem + T.L.stage;
  float* cur = T.act(0);
  first_layer(T, cur);
  for (int l = 0; l + 1 < p.nl; ++l) {
    float* nxt = keep ? T.act(l + 1) : T.act((l + 1) & 1);
    block_gemm(p.precision, cur, nxt, nullptr, T.L.ld, T.L.rows, p.width[l], p.width[l + 1], p.W[l], true, p.b[l], true, stage);
    __syncthreads();
    cur = nxt;
  }
  return cur;
}

// mix[q][c] = sum_t weight[t][q] * last[t*tq + q][c], the corners in the CPU kernel's order.
__device__ void mix_corners(const Tile& T, const float* last, float* mix, int width) {
  const int nc = T.p.ensemble ? 4 : 1, ld = T.L.ld;
  for (int idx = threadIdx.x; idx < T.L.tq * width; idx += kThreads) {
    const int q = idx / width, c = idx % width;
    float m = last[T.row(0, q) * ld + c] * T.weight()[T.row(0, q)];
    for (int t = 1; t < nc; ++t) m += last[T.row(t, q) * ld + c] * T.weight()[T.row(t, q)];
    mix[q * ld + c] = m;
  }
  __syncthreads();
}

__device__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ------------------------------------------------------------------ kernels

__global__ void __launch_bounds__(kThreads) liif_forward_kernel(LiifProblem p, float* __restrict__ out, int rows) {
  extern __shared__ __align__(16) float smem[];
  const Layout L(p, rows, false);
  const int64_t nq = p.B * p.Q, ntiles = (nq + L.tq - 1) / L.tq;
  const int out_dim = p.width[p.nl], lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const int64_t q0 = tile * L.tq;
    const Tile T{p, L, smem, q0, static_cast<int>(nq - q0 < L.tq ? nq - q0 : L.tq)};
    float* last = hidden_layers(T, false);
    const int width = p.nl > 0 ? p.width[p.nl - 1] : p.width[0];
    float* mix = last == T.act(0) ? T.act(1) : T.act(0);
    mix_corners(T, last, mix, width);
    if (p.nl == 0) {
      for (int idx = threadIdx.x; idx < T.tq * width; idx += kThreads)
        out[(q0 + idx / width) * out_dim + idx % width] = mix[(idx / width) * L.ld + idx % width];
    } else {
      // last layer once per query: one warp per (query, output), lanes split the inputs
      const float* Wl = p.W[p.nl - 1];
      for (int pair = warp; pair < T.tq * out_dim; pair += kWarps) {
        const int q = pair / out_dim, o = pair % out_dim;
        float s = 0.f;
        for (int c = lane; c < width; c += 32) s += mix[q * L.ld + c] * __ldg(Wl + o * width + c);
        s = warp_sum(s);
        if (lane == 0) out[(q0 + q) * out_dim + o] = s + __ldg(p.b[p.nl - 1] + o);
      }
    }
    __syncthreads();  // the tile's buffers are reused by the next tile
  }
}

// Offsets of the parameter gradients in the flat buffer (see kernels.h).
struct ParamOffsets {
  int64_t wrel, b1, W[kLiifMaxLayers], b[kLiifMaxLayers], total;
  __host__ __device__ explicit ParamOffsets(const LiifProblem& p) {
    wrel = 0;
    b1 = wrel + static_cast<int64_t>(p.width[0]) * p.nrel;
    int64_t o = b1 + p.width[0];
    for (int l = 0; l < p.nl; ++l) {
      W[l] = o;
      o += static_cast<int64_t>(p.width[l + 1]) * p.width[l];
      b[l] = o;
      o += p.width[l + 1];
    }
    total = o;
  }
};

// gW[n*K + k] += sum_r D[r][n] * A[r][k] and gb[n] += sum_r D[r][n] over the tile's valid rows
// (D, A in shared memory with leading dimensions ldd, lda). gW/gb: this block's slice.
__device__ void accum_param_grad(const Tile& T, float* gW, float* gb, const float* D, int ldd, const float* A,
                                 int lda, int N, int K, bool per_query) {
  const int nc = T.p.ensemble ? 4 : 1;
  const int nrows = per_query ? T.tq : T.L.rows;
  for (int idx = threadIdx.x; idx < N * (K + 1); idx += kThreads) {
    const int n = idx / (K + 1), k = idx % (K + 1);  // k == K: the bias
    float s = 0.f;
    for (int r = 0; r < nrows; ++r) {
      const int q = per_query ? r : r % T.L.tq;
      if (q >= T.tq || (!per_query && r / T.L.tq >= nc)) continue;
      s += D[r * ldd + n] * (k < K ? A[r * lda + k] : 1.f);
    }
    if (k < K) gW[static_cast<int64_t>(n) * K + k] += s;
    else gb[n] += s;
  }
}

__global__ void __launch_bounds__(kThreads) liif_backward_kernel(LiifProblem p, const float* __restrict__ grad_out,
                                                                 float* __restrict__ grad_proj,
                                                                 float* __restrict__ split, int rows) {
  extern __shared__ __align__(16) float smem[];
  const Layout L(p, rows, true);
  const ParamOffsets off(p);
  float* slice = split + blockIdx.x * off.total;  // this block's parameter gradients
  const int64_t nq = p.B * p.Q, ntiles = (nq + L.tq - 1) / L.tq;
  const int nl = p.nl, out_dim = p.width[nl], nc = p.ensemble ? 4 : 1, ld = L.ld;
  const int n1 = p.width[0], width = nl > 0 ? p.width[nl - 1] : n1;
  float* stage = smem + L.stage;
  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const int64_t q0 = tile * L.tq;
    const Tile T{p, L, smem, q0, static_cast<int>(nq - q0 < L.tq ? nq - q0 : L.tq)};
    float* last = hidden_layers(T, true);  // act(l) holds layer l's input for every layer
    const int nbuf = nl > 0 ? nl : 1;
    float* D0 = T.act(nbuf);
    float* D1 = T.act(nbuf + 1);
    // grad_out of the tile's queries -> D0 [tq][out_dim]; the mixed state -> D1
    for (int idx = threadIdx.x; idx < L.tq * out_dim; idx += kThreads) {
      const int q = idx / out_dim, o = idx % out_dim;
      D0[q * ld + o] = q < T.tq ? grad_out[(q0 + q) * out_dim + o] : 0.f;
    }
    mix_corners(T, last, D1, width);  // ends with a barrier
    if (nl > 0) accum_param_grad(T, slice + off.W[nl - 1], slice + off.b[nl - 1], D0, ld, D1, ld, out_dim, width, true);
    __syncthreads();
    // dz[t*tq + q][c] = weight * (g[q] @ W_last)[c], through the last hidden ReLU -> D1
    const float* Wl = nl > 0 ? p.W[nl - 1] : nullptr;
    for (int idx = threadIdx.x; idx < L.tq * width; idx += kThreads) {
      const int q = idx / width, c = idx % width;
      float dm = 0.f;
      if (nl > 0) {
        for (int o = 0; o < out_dim; ++o) dm += D0[q * ld + o] * __ldg(Wl + o * width + c);
      } else {
        dm = D0[q * ld + c];
      }
      for (int t = 0; t < nc; ++t) {
        const int r = T.row(t, q);
        const float v = dm * T.weight()[r];
        D1[r * ld + c] = nl > 0 ? im::relu_grad(v, last[r * ld + c]) : v;
      }
    }
    __syncthreads();
    float* dz = D1;
    float* dprev = D0;
    for (int l = nl - 2; l >= 0; --l) {
      accum_param_grad(T, slice + off.W[l], slice + off.b[l], dz, ld, T.act(l), ld, p.width[l + 1], p.width[l], false);
      // d(layer l's input) = dz @ W[l], through the ReLU that produced act(l)
      block_gemm(p.precision, dz, dprev, T.act(l), ld, L.rows, p.width[l + 1], p.width[l], p.W[l], false, nullptr, false, stage);
      __syncthreads();
      float* tmp = dz;
      dz = dprev;
      dprev = tmp;
    }
    // first layer: rel columns, bias, and the projection rows (scattered with atomics)
    accum_param_grad(T, slice + off.wrel, slice + off.b1, dz, ld, T.feat(), 4, n1, p.nrel, false);
    // accum_param_grad wrote wrel as [n][k] = (N1, nrel): PyTorch's layout of w_rel
    for (int idx = threadIdx.x; idx < L.rows * n1; idx += kThreads) {
      const int r = idx / n1, c = idx % n1;
      if (r % L.tq < T.tq && r / L.tq < nc) atomicAdd(grad_proj + T.cell()[r] * n1 + c, dz[r * ld + c]);
    }
    __syncthreads();
  }
}

// out[i] = sum_b split[b][i], b in block order: the deterministic reduction of the slices.
__global__ void __launch_bounds__(kThreads) sum_slices_kernel(const float* __restrict__ split, int nslices,
                                                              int64_t n, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int b = 0; b < nslices; ++b) s += split[b * n + i];
    out[i] = s;
  }
}

// ------------------------------------------------------------------ launch helpers

bool valid(const LiifProblem& p) {
  if (p.nl < 0 || p.nl > kLiifMaxLayers || (p.nrel != 2 && p.nrel != 4)) return false;
  if (p.B < 0 || p.Q < 0 || p.h < 1 || p.w < 1) return false;
  for (int l = 0; l <= p.nl; ++l)
    if (p.width[l] < 1 || p.width[l] > kLiifMaxWidth) return false;
  return true;
}

// How a launch runs: tile rows, dynamic shared memory, persistent grid size.
struct Plan {
  int rows = 0, blocks = 0;
  size_t bytes = 0;
};

// The largest tile (rows in {32, 16, 8, 4}, at least one query) whose shared memory fits the
// device, and as many blocks as can be resident at once (never more than there are tiles).
// The grid is a function of the problem and the device only, so the backward's block-ordered
// sum of the split buffers is reproducible.
cudaError_t make_plan(const LiifProblem& p, bool backward, Plan* plan) {
  int dev = 0, limit = 0, sms = 0, per_sm = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  const int nc = p.ensemble ? 4 : 1;
  for (int r = kMaxRows; r >= nc && r >= kRowsPerThread; r /= 2) {
    const Layout L(p, r, backward);
    if (L.bytes() <= static_cast<size_t>(limit)) {
      plan->rows = r;
      plan->bytes = L.bytes();
      break;
    }
  }
  if (plan->rows == 0) return cudaErrorInvalidConfiguration;  // too many layers for one tile
  const void* kernel = backward ? reinterpret_cast<const void*>(liif_backward_kernel)
                                : reinterpret_cast<const void*>(liif_forward_kernel);
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(plan->bytes));
  if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, plan->bytes);
  if (e != cudaSuccess) return e;
  const int64_t tq = plan->rows / nc, ntiles = (p.B * p.Q + tq - 1) / tq;
  const int64_t resident = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  plan->blocks = static_cast<int>(ntiles < resident ? (ntiles > 0 ? ntiles : 1) : resident);
  return cudaSuccess;
}

}  // namespace

int64_t liif_param_count(const LiifProblem& p) { return ParamOffsets(p).total; }

int64_t liif_backward_workspace(const LiifProblem& p) {
  Plan plan;
  if (!valid(p) || make_plan(p, true, &plan) != cudaSuccess) return 0;  // the backward reports the error
  return static_cast<int64_t>(plan.blocks) * ParamOffsets(p).total;
}

cudaError_t liif_query_forward(const LiifProblem& p, float* out, cudaStream_t stream) {
  if (!valid(p)) return cudaErrorInvalidValue;
  if (p.B * p.Q == 0) return cudaSuccess;
  Plan plan;
  const cudaError_t e = make_plan(p, false, &plan);
  if (e != cudaSuccess) return e;
  FL_LAUNCH(liif_forward_kernel, plan.blocks, kThreads, plan.bytes, stream, p, out, plan.rows);
  return cudaGetLastError();
}

cudaError_t liif_query_backward(const LiifProblem& p, const float* grad_out, float* grad_proj, float* grad_params,
                                float* workspace, cudaStream_t stream) {
  if (!valid(p)) return cudaErrorInvalidValue;
  const int64_t np = liif_param_count(p);
  if (p.B * p.Q == 0) return cudaMemsetAsync(grad_params, 0, np * sizeof(float), stream);
  Plan plan;
  cudaError_t e = make_plan(p, true, &plan);  // the same plan liif_backward_workspace sized
  if (e != cudaSuccess) return e;
  e = cudaMemsetAsync(workspace, 0, static_cast<size_t>(plan.blocks) * np * sizeof(float), stream);
  if (e != cudaSuccess) return e;
  FL_LAUNCH(liif_backward_kernel, plan.blocks, kThreads, plan.bytes, stream, p, grad_out, grad_proj, workspace, plan.rows);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const int64_t rblocks = (np + kThreads - 1) / kThreads;
  FL_LAUNCH(sum_slices_kernel, static_cast<int>(rblocks < 4096 ? rblocks : 4096), kThreads, 0, stream, 
      workspace, plan.blocks, np, grad_params);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fastliif
