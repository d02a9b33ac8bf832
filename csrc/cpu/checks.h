// The registered CPU entry points of torch.ops.skiparse: each validates its arguments (checks.cpp) and then calls
// the kernel of kernels.h, which trusts them. Same signatures as the kernels.
#pragma once

#include "kernels.h"

namespace skiparse::cpu {

Tensor checked_reorder(const Tensor& x, int64_t sparsity, bool group);
Tensor checked_restore(const Tensor& x, int64_t sparsity, bool group, int64_t length);

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> checked_attention_forward(
    const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& text_q, const OptTensor& text_k,
    const OptTensor& text_v, const OptTensor& text_mask, const OptTensor& video_mask, int64_t sparsity, bool group,
    double scale);

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> checked_attention_backward(
    const Tensor& dout, const Tensor& dtext_out, const Tensor& q, const Tensor& k, const Tensor& v,
    const OptTensor& text_q, const OptTensor& text_k, const OptTensor& text_v, const OptTensor& text_mask,
    const OptTensor& video_mask, int64_t sparsity, bool group, double scale, const Tensor& out, const Tensor& lse,
    const Tensor& text_parts, const Tensor& text_lse);

Tensor checked_conv3d_3x3(const Tensor& input, const Tensor& weight, const OptTensor& bias,
                          const OptTensor& context);

}  // namespace skiparse::cpu
