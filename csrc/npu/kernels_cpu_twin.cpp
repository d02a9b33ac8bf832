// Host twin of the NPU copy kernels: runs kernels/copy_rows.cpp on the CPU model of AscendC (stubs/kernel_operator.h),
// one AI core after another, with the tiling host.cpp would launch it with (tests/npu/test_npu_kernels_twin.py).
// Usage: kernels_cpu_twin reorder|restore B L T C k group elem_bytes ub_bytes cores  < source rows  > destination rows
// Rows are raw bytes; the reorder's source is the video rows followed by the text rows. The destination starts as
// 0xEE bytes, so a row the kernel never writes shows in the output.
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_operator.h"
#include "tiling_args.h"

extern "C" void skiparse_reorder(GM_ADDR src, GM_ADDR text, GM_ADDR dst, GM_ADDR tiling);
extern "C" void skiparse_restore(GM_ADDR src, GM_ADDR dst, GM_ADDR tiling);

int main(int argc, char** argv) {
  const int argn = 2 + skiparse::npu::kTilingArgCount;
  const bool reorder = argc == argn && std::strcmp(argv[1], "reorder") == 0;
  if (argc != argn || (!reorder && std::strcmp(argv[1], "restore") != 0)) {
    std::fprintf(stderr, "usage: %s reorder|restore %s\n", argv[0], skiparse::npu::kTilingArgUsage);
    return 2;
  }
  try {
    const auto [ub_bytes, t] = skiparse::npu::parse_tiling_args(argv + 2);
    const size_t row_bytes = static_cast<size_t>(t.features * t.elem_bytes);
    const size_t natural = static_cast<size_t>(t.batch * t.length) * row_bytes;
    const size_t text = static_cast<size_t>(t.batch * t.text_length) * row_bytes;
    const size_t joint = static_cast<size_t>(t.total_rows) * row_bytes;
    std::vector<uint8_t> src(reorder ? natural + text : joint), dst(reorder ? joint : natural, 0xEE);
    if (std::fread(src.data(), 1, src.size(), stdin) != src.size() || std::fgetc(stdin) != EOF)
      throw std::invalid_argument("expected " + std::to_string(src.size()) + " input bytes");
    std::vector<int64_t> tiling(sizeof(t) / sizeof(int64_t));  // the device copy host.cpp makes, 8-byte aligned
    std::memcpy(tiling.data(), &t, sizeof(t));

    AscendC::twin::ub_bytes = ub_bytes;
    for (int64_t core = 0; core < t.cores; ++core) {
      AscendC::twin::start_core(core);
      const auto tiling_addr = reinterpret_cast<GM_ADDR>(tiling.data());
      if (reorder)
        skiparse_reorder(src.data(), src.data() + natural, dst.data(), tiling_addr);
      else
        skiparse_restore(src.data(), dst.data(), tiling_addr);
    }
    if (std::fwrite(dst.data(), 1, dst.size(), stdout) != dst.size()) throw std::runtime_error("short write");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
