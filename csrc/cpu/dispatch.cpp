// Run-time choice among the ISA builds of the attention and conv kernels (csrc/cpu/isa/*.cpp): the one ATen itself uses
// for its CPU kernels, at::get_cpu_capability(), which follows the CPU and honours ATEN_CPU_CAPABILITY
// (default|avx2|avx512). AVX2 is the lowest build on x86, so `default` runs it too.
#include <ATen/Version.h>

#include "dispatch.h"
#include "kernels.h"

namespace skiparse::cpu {

#define SKIPARSE_DECLARE_KERNELS(ISA)                                                                        \
  namespace ISA {                                                                                              \
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> attention_forward(                                        \
      const Tensor&, const Tensor&, const Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,       \
      const OptTensor&, const OptTensor&, int64_t, bool, double);                                              \
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> attention_backward(                               \
      const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,             \
      const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, int64_t, bool, double,           \
      const Tensor&, const Tensor&, const Tensor&, const Tensor&);                                             \
  Tensor conv3d_3x3(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&);                         \
  }
#ifdef SKIPARSE_ISA_X86
SKIPARSE_DECLARE_KERNELS(AVX2)
SKIPARSE_DECLARE_KERNELS(AVX512)
#else
SKIPARSE_DECLARE_KERNELS(DEFAULT)
#endif

std::string kernel_isa() {
#ifdef SKIPARSE_ISA_X86
  static const std::string isa = at::get_cpu_capability() == "AVX512" ? "AVX512" : "AVX2";
#else
  static const std::string isa = "DEFAULT";
#endif
  return isa;
}

#ifdef SKIPARSE_ISA_X86
#define SKIPARSE_CALL(fn, ...) (kernel_isa() == "AVX512" ? AVX512::fn(__VA_ARGS__) : AVX2::fn(__VA_ARGS__))
#else
#define SKIPARSE_CALL(fn, ...) DEFAULT::fn(__VA_ARGS__)
#endif

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> attention_forward(
    const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& text_q, const OptTensor& text_k,
    const OptTensor& text_v, const OptTensor& text_mask, const OptTensor& video_mask, int64_t sparsity, bool group,
    double scale) {
  return SKIPARSE_CALL(attention_forward, q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group,
                       scale);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> attention_backward(
    const Tensor& dout, const Tensor& dtext_out, const Tensor& q, const Tensor& k, const Tensor& v,
    const OptTensor& text_q, const OptTensor& text_k, const OptTensor& text_v, const OptTensor& text_mask,
    const OptTensor& video_mask, int64_t sparsity, bool group, double scale, const Tensor& out, const Tensor& lse,
    const Tensor& text_parts, const Tensor& text_lse) {
  return SKIPARSE_CALL(attention_backward, dout, dtext_out, q, k, v, text_q, text_k, text_v, text_mask, video_mask,
                       sparsity, group, scale, out, lse, text_parts, text_lse);
}

Tensor conv3d_3x3(const Tensor& input, const Tensor& weight, const OptTensor& bias, const OptTensor& context) {
  return SKIPARSE_CALL(conv3d_3x3, input, weight, bias, context);
}

}  // namespace skiparse::cpu
