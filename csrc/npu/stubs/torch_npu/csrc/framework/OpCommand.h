// Stub of torch_npu's OpCommand.h: the task-queue entry host.cpp uses, with the real signature (syntax check only).
#pragma once
#include <functional>
#include <string>
namespace at_npu {
namespace native {
using PROC_FUNC = std::function<int()>;  // OpParamMaker.h
class OpCommand {
 public:
  static void RunOpApi(const std::string& op_name, PROC_FUNC func, bool sync = false);
};
}  // namespace native
}  // namespace at_npu
