// The tiling arguments of the NPU test drivers (tiling_report.cpp, kernels_cpu_twin.cpp), parsed in one place.
#pragma once

#include <cstdlib>

#include "tiling.h"

namespace skiparse {
namespace npu {

constexpr int kTilingArgCount = 9;
constexpr const char* kTilingArgUsage = "B L T C k group elem_bytes ub_bytes cores";

struct TilingArgs {
  int64_t ub_bytes;  // the UB size the platform reports (the tiling leaves the reserve); the kernel twin's UB
  ReorderTiling tiling;
};

// args: the kTilingArgCount values of kTilingArgUsage, in that order.
inline TilingArgs parse_tiling_args(char** args) {
  int64_t a[kTilingArgCount];
  for (int i = 0; i < kTilingArgCount; ++i) a[i] = std::atoll(args[i]);
  return {a[7], make_reorder_tiling(a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7], a[8])};
}

}  // namespace npu
}  // namespace skiparse
