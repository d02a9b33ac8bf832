// Which ISA build of the attention kernels runs here (dispatch.cpp).
#pragma once

#include <string>

namespace skiparse::cpu {

// "AVX512" or "AVX2" on x86 (ATen's CPU capability, ATEN_CPU_CAPABILITY honoured), "DEFAULT" elsewhere.
std::string kernel_isa();

}  // namespace skiparse::cpu
