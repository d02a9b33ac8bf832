// Stub of the header ascendc_library() generates for the skiparse_reorder kernel (syntax check only).
#pragma once
#include <cstdint>
#ifndef ACLRT_LAUNCH_KERNEL
#define ACLRT_LAUNCH_KERNEL(kernel_func) aclrtlaunch_##kernel_func
#endif
extern "C" uint32_t aclrtlaunch_skiparse_reorder(uint32_t blockDim, void* stream, void* x, void* text, void* y,
                                              void* tiling);
