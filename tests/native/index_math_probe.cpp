// Prints csrc/index_math.h's LIIF corners for queries read from stdin, exactly (hex floats), so
// tests/test_index_math.py can compare the header (as built by g++ and by nvcc's host pass)
// with grid_sample. Input lines: "<f32|f64> h w ensemble cy cx", coordinates as hex floats.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../../csrc/index_math.h"

template <typename T>
void probe(long h, long w, bool ensemble, double cy, double cx) {
  fastliif::im::Corners<T> k;
  fastliif::im::query_corners<T>(static_cast<T>(cy), static_cast<T>(cx), h, w, ensemble, k);
  for (int t = 0; t < (ensemble ? 4 : 1); ++t)
    std::printf("%ld %a %a %a\n", static_cast<long>(k.cell[t]), static_cast<double>(k.rel[t][0]),
                static_cast<double>(k.rel[t][1]), static_cast<double>(k.weight[t]));
}

int main() {
  char dtype[8];
  long h, w;
  int ens;
  char sy[64], sx[64];
  while (std::scanf("%7s %ld %ld %d %63s %63s", dtype, &h, &w, &ens, sy, sx) == 6) {
    const double cy = std::strtod(sy, nullptr), cx = std::strtod(sx, nullptr);
    if (std::strcmp(dtype, "f32") == 0) probe<float>(h, w, ens != 0, cy, cx);
    else probe<double>(h, w, ens != 0, cy, cx);
  }
  return 0;
}
