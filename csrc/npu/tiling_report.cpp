// Prints a ReorderTiling and its work partition as JSON, for tests/npu/test_npu_tiling.py (no CANN needed).
// Usage: tiling_report B L T C k group elem_bytes ub_bytes cores
#include <cstdio>
#include <cstdlib>

#include "tiling.h"

int main(int argc, char** argv) {
  if (argc != 10) {
    std::fprintf(stderr, "usage: %s B L T C k group elem_bytes ub_bytes cores\n", argv[0]);
    return 2;
  }
  int64_t a[9];
  for (int i = 0; i < 9; ++i) a[i] = std::atoll(argv[i + 1]);
  try {
    const auto t = skiparse::npu::make_reorder_tiling(a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7], a[8]);
    std::printf("{\"sub_length\": %lld, \"elem_bytes\": %lld, \"cols_per_chunk\": %lld, \"rows_per_chunk\": %lld, "
                "\"row_pitch\": %lld, \"total_rows\": %lld, \"cores\": %lld, \"ranges\": [", (long long)t.sub_length,
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
