// skiparse._C: registers the CPU kernels of torch.ops.skiparse (schemas live in skiparse/ops.py) and exposes
// build facts and the C++ index math for tests.
#include <torch/extension.h>

#include <algorithm>
#include <chrono>

#include "../skiparse/index.h"
#include "checks.h"
#include "dispatch.h"
#include "gemm.h"
#include "kernels.h"

namespace {

std::string required_isa_missing() {
#if defined(__AVX2__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
    return "AVX2+FMA+F16C";
#endif
  return "";
}

// Whether bf16 / fp16 attention GEMMs run in that dtype here (oneDNN brgemm on AMX tiles).
bool native_lowp(bool half) {
  namespace isa = skiparse::cpu::CPU_CAPABILITY;
  return half ? isa::native_lowp<at::Half>() : isa::native_lowp<at::BFloat16>();
}

std::string build_info() {
  auto lowp = [](bool half) { return native_lowp(half) ? "brgemm (AMX)" : "fp32 sgemm_"; };
  return "kernels " + skiparse::cpu::kernel_isa() +
         ", GEMM fp32: " + (skiparse::cpu::CPU_CAPABILITY::has_blas() ? "BLAS sgemm_" : "at::addmm fallback") +
         ", bf16: " + lowp(false) + ", fp16: " + lowp(true);
}

// The clock of the calling core in GHz, measured: the best of 3 timed chains of dependent integer adds, one cycle
// each on every x86 core. A VM's /proc/cpuinfo gives the nominal clock, which can lie well below the turbo clock
// that the kernels run at (fp32 SDPA measured 110% of a peak taken at the nominal 2.6 GHz). 0 off x86-64.
double measure_clock_ghz() {
#if defined(__x86_64__)
  constexpr int64_t kAdds = int64_t(1) << 26;
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    uint64_t x = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kAdds; i += 8) {  // register operands: newer cores fold add-immediate chains at rename
      asm volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                   "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                   : "+r"(x)
                   : "r"(i));
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, kAdds / s / 1e9);
  }
  return best;
#else
  return 0;
#endif
}

// (k, Lp/k) natural row per (sub-sequence, position), -1 for padding: the C++ index math, for tests.
at::Tensor index_table(int64_t L, int64_t k, bool group) {
  const int64_t Ls = skiparse::sub_length(L, k);
  at::Tensor t = at::full({k, Ls}, -1, at::kLong);
  auto a = t.accessor<int64_t, 2>();
  for (int64_t s = 0; s < k; ++s)
    for (int64_t j = 0; j < skiparse::num_lanes(k, group); ++j) {
      const skiparse::Lane ln = skiparse::lane(s, j, L, k, group);
      for (int64_t n = 0; n < ln.count; ++n) a[s][ln.pos0 + n * ln.pos_stride] = ln.start + n * ln.stride;
    }
  return t;
}

}  // namespace

TORCH_LIBRARY_IMPL(skiparse, CPU, m) {
  m.impl("reorder", &skiparse::cpu::checked_reorder);
  m.impl("restore", &skiparse::cpu::checked_restore);
  m.impl("attention", &skiparse::cpu::checked_attention_forward);
  m.impl("attention_backward", &skiparse::cpu::checked_attention_backward);
  m.impl("conv3d_3x3", &skiparse::cpu::checked_conv3d_3x3);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("required_isa_missing", &required_isa_missing, "ISA this build needs that the CPU lacks ('' if none)");
  m.def("build_info", &build_info);
  m.def("kernel_isa", &skiparse::cpu::kernel_isa, "ISA build of the attention kernels in use: AVX512, AVX2, DEFAULT");
  m.def("native_lowp", &native_lowp, py::arg("half"), "bf16 (half=False) / fp16 GEMMs in that dtype (AMX brgemm)");
  m.def("measure_clock_ghz", &measure_clock_ghz, "this core's clock (GHz) timed on a dependent-add chain; 0 off x86");
  m.def("index_table", &index_table, "(k, Lp/k) natural rows of each sub-sequence, -1 = padding");
}
