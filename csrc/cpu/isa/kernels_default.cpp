// The attention and conv kernels for non-x86 builds (one build, at::vec's default for the platform).
#ifndef CPU_CAPABILITY
#define CPU_CAPABILITY DEFAULT
#endif
#include "../attention_bwd.cpp"
#include "../attention_fwd.cpp"
#include "../conv3d_3x3.cpp"
