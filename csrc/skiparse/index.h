// Skiparse index math, written once for every C++ consumer (CPU kernels, AscendC host tiling and kernels).
// The Python twin is skiparse/index.py; tests/test_index.py checks that the two agree.
//
// Natural token i of a length-L sequence is padded to Lp = ceil(L / k^2) * k^2 and sent to sub-sequence s at
// position r:   single-skip  i = r*k + s
//               group-skip   i = n*k^2 + s*k + j,  r = n*k + j
// A sub-sequence is a union of lanes (single: one lane of stride k; group: k lanes of stride k^2), so every tile
// of one lane is a single strided view of the tensor. Rows past L (padding) are simply absent from the lanes.
// Plain C++ without torch so that device code can include it; define SKIPARSE_INLINE (e.g. `__aicore__ inline`)
// before including it from an AscendC kernel.
#pragma once

#include <cstdint>

#ifndef SKIPARSE_INLINE
#define SKIPARSE_INLINE inline
#endif

namespace skiparse {

struct Lane {
  int64_t start;       // natural row of the first element
  int64_t stride;      // natural-row step between elements
  int64_t count;       // elements with natural row < L
  int64_t pos0;        // position (in the sub-sequence) of the first element
  int64_t pos_stride;  // position step between elements
};

SKIPARSE_INLINE int64_t padded_length(int64_t L, int64_t k) { return (L + k * k - 1) / (k * k) * (k * k); }

SKIPARSE_INLINE int64_t sub_length(int64_t L, int64_t k) { return padded_length(L, k) / k; }

SKIPARSE_INLINE int64_t natural_index(int64_t sub, int64_t pos, int64_t k, bool group) {
  return group ? (pos / k) * k * k + sub * k + pos % k : pos * k + sub;
}

SKIPARSE_INLINE int64_t sub_of(int64_t i, int64_t k, bool group) { return group ? (i / k) % k : i % k; }

SKIPARSE_INLINE int64_t pos_of(int64_t i, int64_t k, bool group) {
  return group ? (i / (k * k)) * k + i % k : i / k;
}

SKIPARSE_INLINE int64_t num_lanes(int64_t k, bool group) { return group ? k : 1; }

// Lane j (0 <= j < num_lanes) of sub-sequence `sub`.
SKIPARSE_INLINE Lane lane(int64_t sub, int64_t j, int64_t L, int64_t k, bool group) {
  Lane ln;
  ln.start = group ? sub * k + j : sub;
  ln.stride = group ? k * k : k;
  ln.count = ln.start < L ? (L - ln.start + ln.stride - 1) / ln.stride : 0;
  ln.pos0 = group ? j : 0;
  ln.pos_stride = group ? k : 1;
  return ln;
}

// Rows of sub-sequence `sub` that are real tokens (natural row < L).
SKIPARSE_INLINE int64_t sub_count(int64_t sub, int64_t L, int64_t k, bool group) {
  int64_t n = 0;
  for (int64_t j = 0; j < num_lanes(k, group); ++j) n += lane(sub, j, L, k, group).count;
  return n;
}

}  // namespace skiparse
