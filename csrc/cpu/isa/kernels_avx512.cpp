// The attention and conv kernels built for AVX-512 (F, BW, VL, DQ: the set ATen's AVX512 kernels use), as
// skiparse::cpu::AVX512::*; dispatch.cpp runs them only on CPUs that have it. The target pragma stands
// in for per-file compiler flags, which setuptools cannot give; it precedes every include so that all code of
// this file, at::vec included, is generated for AVX-512.
#undef CPU_CAPABILITY
#undef CPU_CAPABILITY_AVX2
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")
// The pragma does not define the ISA macros that headers test (sleef.h declares its 16-lane functions under
// __AVX512F__); -mavx512* would.
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512DQ__ 1
#include "../attention_bwd.cpp"
#include "../attention_fwd.cpp"
#include "../conv3d_3x3.cpp"
