// Stub of torch_npu's NPUStream.h: the current-stream query host.cpp uses (syntax check only).
#pragma once
namespace c10_npu {
class NPUStream {
 public:
  void* stream(bool need_empty) const;
};
NPUStream getCurrentNPUStream(signed char device_index = -1);
}  // namespace c10_npu
