// Stub of torch_npu's OpCommand.h: the task-queue entry host.cpp uses (syntax check only).
#pragma once
#include <functional>
#include <string>
namespace at_npu {
namespace native {
class OpCommand {
 public:
  static void RunOpApi(const std::string& op_name, const std::function<int()>& func);
};
}  // namespace native
}  // namespace at_npu
