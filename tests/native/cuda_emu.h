// A CPU stand-in for the CUDA runtime, just enough to run csrc/cuda/*.cu's exact-fp32 paths in
// tests without a GPU (tests/test_cuda_emulated.py): one std::thread per CUDA thread, blocks run
// one after another, __syncthreads is a barrier, shared memory is one static buffer, warp
// shuffles go through a per-warp exchange. Tensor-core (mma.sync) and cp.async asm are compiled
// out under FASTLIIF_CUDA_EMULATION (cp.async becomes a plain copy). Test-only: slow by design.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __shared__

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
using cudaStream_t = void*;
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin, cudaDevAttrMultiProcessorCount };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
inline thread_local dim3 tidx, bidx;
inline dim3 bdim, gdim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::barrier<>*> warp_barriers;
constexpr size_t kSmemBytes = 256 * 1024;  // more than any GPU's per-block limit
inline float warp_slots[32][32];  // [warp][lane] exchange for shuffles
inline std::mutex atomic_mutex;
inline int sms = 3;  // a small "device": few resident blocks, so the persistent loops take several tiles

template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, Args... args) {
  gdim = grid;
  bdim = block;
  const unsigned nthreads = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> bar(nthreads);
        block_barrier = &bar;
        std::vector<std::barrier<>*> warps;
        for (unsigned w = 0; w < (nthreads + 31) / 32; ++w) warps.push_back(new std::barrier<>(32));
        warp_barriers = warps;
        std::vector<std::thread> threads;
        threads.reserve(nthreads);
        for (unsigned t = 0; t < nthreads; ++t)
          threads.emplace_back([&, t] {
            tidx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            bidx = dim3(bx, by, bz);
            kernel(args...);
          });
        for (auto& th : threads) th.join();
        for (auto* w : warps) delete w;
      }
}
}  // namespace emu

#define threadIdx (emu::tidx)
#define blockIdx (emu::bidx)
#define blockDim (emu::bdim)
#define gridDim (emu::gdim)
#define FL_LAUNCH(kernel, grid, block, smem, stream, ...) emu::launch(kernel, dim3(grid), dim3(block), __VA_ARGS__)

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline float atomicAdd(float* p, float v) {
  std::lock_guard<std::mutex> lock(emu::atomic_mutex);
  const float old = *p;
  *p = old + v;
  return old;
}
// All 32 lanes of a warp call it together (as the kernels do): publish, barrier, read, barrier.
inline float __shfl_xor_sync(unsigned, float v, int mask) {
  const unsigned t = threadIdx.x + threadIdx.y * blockDim.x, warp = t / 32, lane = t % 32;
  emu::warp_slots[warp][lane] = v;
  emu::warp_barriers[warp]->arrive_and_wait();
  const float r = emu::warp_slots[warp][lane ^ mask];
  emu::warp_barriers[warp]->arrive_and_wait();
  return r;
}

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? emu::sms : 227 * 1024;
  return cudaSuccess;
}
template <typename K>
inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int bytes) {
  return bytes <= static_cast<int>(emu::kSmemBytes) ? cudaSuccess : cudaErrorInvalidValue;
}
template <typename K>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K, int, size_t) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
