// Stub of torch_npu's NPUGuard.h: the device guard host.cpp uses, with the real constructors (syntax check only).
#pragma once
#include <c10/core/Device.h>
namespace c10_npu {
struct NPUGuard {
  explicit NPUGuard() = delete;
  explicit NPUGuard(c10::DeviceIndex device_index);
  explicit NPUGuard(c10::Device device);
  NPUGuard(const NPUGuard&) = delete;
  NPUGuard& operator=(const NPUGuard&) = delete;
  NPUGuard(NPUGuard&& other) = delete;
  NPUGuard& operator=(NPUGuard&& other) = delete;
  ~NPUGuard();
};
}  // namespace c10_npu
