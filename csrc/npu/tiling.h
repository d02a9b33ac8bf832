// Host-side tiling of the Ascend NPU reorder/restore kernels: which AI core copies which rows, in chunks that fit
// the Unified Buffer. Plain C++ on top of the shared index math (../skiparse/index.h), so it is compiled and tested
// on machines without CANN (tests/npu/test_npu_tiling.py) and the same struct is read by the device code.
//
// Work is the reorder's output rows: row r of the (k*B, SUB, C) output is sub-sequence batch index sb = r / SUB
// (sub-sequence s = sb / B, batch item b = sb % B) at position pos = r % SUB. Its source is natural row
// natural_index(s, pos) of item b, or padding (zero-filled) when that row is >= L. Restore walks the same rows
// with source and destination swapped and skips padding.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "../skiparse/index.h"

namespace skiparse {
namespace npu {

// Passed to the kernel by value (a POD read from global memory): only fixed-width fields.
struct ReorderTiling {
  int64_t batch;           // B
  int64_t length;          // L
  int64_t sparsity;        // k
  int64_t group;           // 0 single-skip, 1 group-skip
  int64_t sub_length;      // SUB = padded_length(L, k) / k
  int64_t features;        // C, elements per row
  int64_t cols_per_chunk;  // features moved per UB transfer (C, or a UB-sized part of a very wide row)
  int64_t rows_per_chunk;  // rows per UB transfer
  int64_t total_rows;      // k * B * SUB
  int64_t rows_per_core;   // consecutive output rows each core owns (the last core may own fewer)
  int64_t cores;           // cores that receive work
};

// Rows and columns per transfer so that two buffers (double buffering) fit in `ub_bytes`, with each transfer a
// multiple of 32 bytes (the UB's block size) where the row allows it.
inline ReorderTiling make_reorder_tiling(int64_t batch, int64_t length, int64_t features, int64_t sparsity,
                                         bool group, int64_t elem_bytes, int64_t ub_bytes, int64_t max_cores) {
  if (batch < 1 || length < 1 || features < 1 || sparsity < 1 || elem_bytes < 1 || max_cores < 1)
    throw std::invalid_argument("reorder tiling: batch, length, features, sparsity, elem_bytes and max_cores must "
                                "be >= 1");
  const int64_t per_buffer = ub_bytes / 2;
  if (per_buffer < 32) throw std::invalid_argument("reorder tiling: ub_bytes must be at least 64");
  ReorderTiling t{};
  t.batch = batch;
  t.length = length;
  t.sparsity = sparsity;
  t.group = group ? 1 : 0;
  t.sub_length = sub_length(length, sparsity);
  t.features = features;
  const int64_t row_bytes = features * elem_bytes;
  if (row_bytes <= per_buffer) {
    t.cols_per_chunk = features;
    t.rows_per_chunk = per_buffer / row_bytes;
  } else {  // a row wider than a buffer: split it in 32-byte multiples
    t.cols_per_chunk = (per_buffer / 32) * 32 / elem_bytes;
    t.rows_per_chunk = 1;
  }
  t.total_rows = sparsity * batch * t.sub_length;
  t.cores = max_cores < t.total_rows ? max_cores : t.total_rows;
  t.rows_per_core = (t.total_rows + t.cores - 1) / t.cores;
  t.cores = (t.total_rows + t.rows_per_core - 1) / t.rows_per_core;  // no core left without rows
  return t;
}

// First output row owned by `core` and one past its last.
SKIPARSE_INLINE int64_t core_begin(const ReorderTiling& t, int64_t core) { return core * t.rows_per_core; }
SKIPARSE_INLINE int64_t core_end(const ReorderTiling& t, int64_t core) {
  const int64_t end = (core + 1) * t.rows_per_core;
  return end < t.total_rows ? end : t.total_rows;
}

// Row of the (B*L, C) input that output row `out_row` copies, or -1 for a padding row (zero-filled).
SKIPARSE_INLINE int64_t source_row(const ReorderTiling& t, int64_t out_row) {
  const int64_t sb = out_row / t.sub_length, pos = out_row % t.sub_length;
  const int64_t s = sb / t.batch, b = sb % t.batch;
  const int64_t i = natural_index(s, pos, t.sparsity, t.group != 0);
  return i < t.length ? b * t.length + i : -1;
}

}  // namespace npu
}  // namespace skiparse
