// Prints a ReorderTiling and its work partition as JSON, for tests/npu/test_npu_tiling.py (no CANN needed).
// Usage: tiling_report B L T C k group elem_bytes ub_bytes cores
#include <cstdio>

#include "tiling_args.h"

int main(int argc, char** argv) {
  if (argc != 1 + skiparse::npu::kTilingArgCount) {
    std::fprintf(stderr, "usage: %s %s\n", argv[0], skiparse::npu::kTilingArgUsage);
    return 2;
  }
  try {
    const auto [ub_bytes, t] = skiparse::npu::parse_tiling_args(argv + 1);
    std::printf("{\"ub_budget\": %lld, \"sub_length\": %lld, \"elem_bytes\": %lld, \"cols_per_chunk\": %lld, "
                "\"rows_per_chunk\": %lld, \"row_pitch\": %lld, \"total_rows\": %lld, \"cores\": %lld, \"ranges\": [",
                (long long)skiparse::npu::ub_budget(ub_bytes), (long long)t.sub_length,
                (long long)t.elem_bytes, (long long)t.cols_per_chunk, (long long)t.rows_per_chunk,
                (long long)skiparse::npu::chunk_row_pitch(t), (long long)t.total_rows, (long long)t.cores);
    for (int64_t c = 0; c < t.cores; ++c)
      std::printf("%s[%lld, %lld]", c ? ", " : "", (long long)skiparse::npu::core_begin(t, c),
                  (long long)skiparse::npu::core_end(t, c));
    std::printf("], \"sources\": [");
    for (int64_t r = 0; r < t.total_rows; ++r)
      std::printf("%s%lld", r ? ", " : "", (long long)skiparse::npu::source_row(t, r));
    std::printf("], \"text_sources\": [");
    for (int64_t r = 0; r < t.total_rows; ++r)
      std::printf("%s%lld", r ? ", " : "", (long long)skiparse::npu::text_row(t, r));
    std::printf("]}\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
