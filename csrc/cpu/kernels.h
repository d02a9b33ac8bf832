// The CPU kernels of the torch.ops.skiparse schemas (skiparse/ops.py defines the schemas, fakes and autograd).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace skiparse::cpu {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

Tensor reorder(const Tensor& x, int64_t sparsity, bool group);
Tensor restore(const Tensor& x, int64_t sparsity, bool group, int64_t length);

// -> out, text_out, lse, text_parts, text_lse
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> attention_forward(
    const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& text_q, const OptTensor& text_k,
    const OptTensor& text_v, const OptTensor& text_mask, const OptTensor& video_mask, int64_t sparsity, bool group,
    double scale);

// -> dq, dk, dv, dtext_q, dtext_k, dtext_v
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> attention_backward(
    const Tensor& dout, const Tensor& dtext_out, const Tensor& q, const Tensor& k, const Tensor& v,
    const OptTensor& text_q, const OptTensor& text_k, const OptTensor& text_v, const OptTensor& text_mask,
    const OptTensor& video_mask, int64_t sparsity, bool group, double scale, const Tensor& out, const Tensor& lse,
    const Tensor& text_parts, const Tensor& text_lse);

// Stride-1 conv3d, weight (C_out, C_in, kt, 3, 3), zero padding 1 in space, none in time (Winograd F(4x4, 3x3)),
// of the frames of context (B, C_in, Tc, H, W) followed by those of input (B, C_in, T, H, W):
// -> (B, C_out, Tc + T - kt + 1, H, W), channels-last.
Tensor conv3d_3x3(const Tensor& input, const Tensor& weight, const OptTensor& bias, const OptTensor& context);

}  // namespace skiparse::cpu
