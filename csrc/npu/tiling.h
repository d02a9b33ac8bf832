// Host-side tiling of the Ascend NPU reorder/restore kernels: which AI core copies which rows, in chunks that fit
// the Unified Buffer. Plain C++ on top of the shared index math (../skiparse/index.h), so it is compiled and tested
// on machines without CANN (tests/npu/test_npu_tiling.py) and the same struct is read by the device code.
//
// Work is the rows of the joint layout: (k*B, SUB + T, C), every sub-sequence's SUB video rows followed by a copy of
// its item's T text rows (T = 0: the plain reorder). Row r is sub-sequence batch index sb = r / (SUB + T)
// (sub-sequence s = sb / B, batch item b = sb % B) at position pos = r % (SUB + T). A video position copies natural
// row natural_index(s, pos) of item b, or is padding (zero-filled) when that row is >= L; a text position copies
// text row pos - SUB of item b. Restore walks the same rows with source and destination swapped and skips padding
// and text rows.
//
// Device code (kernels/copy_rows.cpp) defines SKIPARSE_DEVICE first: it sees the struct and the inline index
// functions only, not the host-only make_reorder_tiling and its standard-library exceptions.
#pragma once

#include <cstdint>
#ifndef SKIPARSE_DEVICE
#include <stdexcept>
#include <string>
#endif

#include "../skiparse/index.h"

namespace skiparse {
namespace npu {

// Passed to the kernel by value (a POD read from global memory): only fixed-width fields.
struct ReorderTiling {
  int64_t batch;           // B
  int64_t length;          // L
  int64_t text_length;     // T, text rows after every sub-sequence (0: none)
  int64_t sparsity;        // k
  int64_t group;           // 0 single-skip, 1 group-skip
  int64_t sub_length;      // SUB = padded_length(L, k) / k
  int64_t joint_length;    // SUB + T, rows per sub-sequence of the joint layout
  int64_t features;        // C, elements per row
  int64_t elem_bytes;      // bytes per element (the kernels move bytes, whatever the dtype)
  int64_t cols_per_chunk;  // features moved per UB transfer (C, or a UB-sized part of a very wide row)
  int64_t rows_per_chunk;  // rows per UB transfer
  int64_t total_rows;      // k * B * (SUB + T)
  int64_t rows_per_core;   // consecutive output rows each core owns (the last core may own fewer)
  int64_t cores;           // cores that receive work
};

constexpr int64_t kUbBlock = 32;             // DataCopyPad starts every row it puts in the UB on a 32-byte boundary
constexpr int64_t kMaxRowsPerCopy = 4095;    // DataCopyExtParams::blockCount limit
constexpr int64_t kMaxBlockBytes = 2097151;  // DataCopyExtParams::blockLen limit (2^21 - 1 bytes)
// The top of the UB is AscendC's own scratch (on the 910B, __NPU_ARCH__ 2201: TOTAL_UB_SIZE 192 KiB, of which a TPipe
// may hand out TOTAL_VEC_LOCAL_SIZE = 184 KiB; API calls use the rest from TMP_UB_OFFSET). The tiling leaves it.
constexpr int64_t kUbReservedBytes = 8 * 1024;

SKIPARSE_INLINE int64_t align_ub_block(int64_t bytes) { return (bytes + kUbBlock - 1) / kUbBlock * kUbBlock; }

// UB bytes of one row of a transfer: cols_per_chunk elements, rounded up to a 32-byte block.
SKIPARSE_INLINE int64_t chunk_row_pitch(const ReorderTiling& t) {
  return align_ub_block(t.cols_per_chunk * t.elem_bytes);
}

#ifndef SKIPARSE_DEVICE
// UB bytes the kernel's buffers may take, of the `ub_bytes` the platform reports (GetCoreMemSize(UB)).
inline int64_t ub_budget(int64_t ub_bytes) { return ub_bytes - kUbReservedBytes; }

// Rows and columns per transfer so that the UB budget holds two transfer buffers (double buffering) plus one zeroed
// row pitch (the reorder's padding rows), every row taking whole 32-byte blocks. A row wider than that is split into
// parts that are multiples of 32 bytes (only a row's last part may be shorter).
inline ReorderTiling make_reorder_tiling(int64_t batch, int64_t length, int64_t text_length, int64_t features,
                                         int64_t sparsity, bool group, int64_t elem_bytes, int64_t ub_bytes,
                                         int64_t max_cores) {
  if (batch < 1 || length < 1 || features < 1 || sparsity < 1 || elem_bytes < 1 || max_cores < 1)
    throw std::invalid_argument("reorder tiling: batch, length, features, sparsity, elem_bytes and max_cores must "
                                "be >= 1");
  if (text_length < 0) throw std::invalid_argument("reorder tiling: text_length must be >= 0");
  const int64_t budget = ub_budget(ub_bytes);
  if (budget < 3 * kUbBlock)
    throw std::invalid_argument("reorder tiling: ub_bytes must leave at least 96 bytes above the " +
                                std::to_string(kUbReservedBytes) + "-byte API reserve");
  ReorderTiling t{};
  t.batch = batch;
  t.length = length;
  t.text_length = text_length;
  t.sparsity = sparsity;
  t.group = group ? 1 : 0;
  t.sub_length = sub_length(length, sparsity);
  t.joint_length = t.sub_length + text_length;
  t.features = features;
  t.elem_bytes = elem_bytes;
  const int64_t pitch = align_ub_block(features * elem_bytes);
  if (3 * pitch <= budget && features * elem_bytes <= kMaxBlockBytes) {
    t.cols_per_chunk = features;
    const int64_t rows = (budget / pitch - 1) / 2;
    t.rows_per_chunk = rows < kMaxRowsPerCopy ? rows : kMaxRowsPerCopy;
  } else {  // parts of a third of the budget at most, and no longer than one copy's block
    const int64_t part = budget / 3 < kMaxBlockBytes ? budget / 3 : kMaxBlockBytes;
    t.cols_per_chunk = part / kUbBlock * kUbBlock / elem_bytes;
    t.rows_per_chunk = 1;
  }
  t.total_rows = sparsity * batch * t.joint_length;
  t.cores = max_cores < t.total_rows ? max_cores : t.total_rows;
  t.rows_per_core = (t.total_rows + t.cores - 1) / t.cores;
  t.cores = (t.total_rows + t.rows_per_core - 1) / t.rows_per_core;  // no core left without rows
  return t;
}
#endif

// First output row owned by `core` and one past its last.
SKIPARSE_INLINE int64_t core_begin(const ReorderTiling& t, int64_t core) { return core * t.rows_per_core; }
SKIPARSE_INLINE int64_t core_end(const ReorderTiling& t, int64_t core) {
  const int64_t end = (core + 1) * t.rows_per_core;
  return end < t.total_rows ? end : t.total_rows;
}

// Row of the (B*L, C) video that joint row `row` holds, or -1 for a padding or text row.
SKIPARSE_INLINE int64_t source_row(const ReorderTiling& t, int64_t row) {
  const int64_t sb = row / t.joint_length, pos = row % t.joint_length;
  if (pos >= t.sub_length) return -1;
  const int64_t s = sb / t.batch, b = sb % t.batch;
  const int64_t i = natural_index(s, pos, t.sparsity, t.group != 0);
  return i < t.length ? b * t.length + i : -1;
}

// Row of the (B*T, C) text that joint row `row` holds, or -1 for a video or padding row.
SKIPARSE_INLINE int64_t text_row(const ReorderTiling& t, int64_t row) {
  const int64_t pos = row % t.joint_length;
  return pos < t.sub_length ? -1 : (row / t.joint_length) % t.batch * t.text_length + pos - t.sub_length;
}

}  // namespace npu
}  // namespace skiparse
