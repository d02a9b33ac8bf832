// The attention and conv kernels built for AVX2 + FMA (the extension's floor on x86): skiparse::cpu::AVX2::*.
// The extension's own flags already target AVX2; dispatch.cpp picks this build or the AVX-512 one at run time.
#include "../attention_bwd.cpp"
#include "../attention_fwd.cpp"
#include "../conv3d_3x3.cpp"
