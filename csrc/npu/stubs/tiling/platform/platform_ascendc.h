// Stub of CANN's tiling/platform/platform_ascendc.h: the core count query host.cpp uses (syntax check only).
#pragma once
#include <cstdint>
namespace platform_ascendc {
class PlatformAscendCManager {
 public:
  static PlatformAscendCManager* GetInstance();
  uint32_t GetCoreNumAiv() const;
};
}  // namespace platform_ascendc
