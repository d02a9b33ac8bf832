// Argument checks of the CPU ops. torch.ops.skiparse.* is public API, so every kernel is registered behind a
// wrapper that validates what the kernel reads and then calls it; a bad call is a RuntimeError naming the argument
// and what was expected (worded as skiparse/_validate.py words the public functions' errors), never a crash or an
// out-of-bounds read.
#include "checks.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace skiparse::cpu {
namespace {

// Python spellings, so that the messages read like the public API's: (2, 10, 3), (5,), torch.float32.
std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

std::string dtype_str(at::ScalarType t) { return "torch." + std::string(c10::getDtypeNames(t).first); }

void dims(const char* op, const char* name, const Tensor& t, int64_t ndim) {
  TORCH_CHECK(t.dim() == ndim, op, ": ", name, " must have ", ndim, " dims, got shape ", shape_str(t.sizes()));
}

void same_kind(const char* op, const char* name, const Tensor& t, const Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", dtype_str(t.scalar_type()),
              " but ", ref_name, " has ", dtype_str(ref.scalar_type()), "; all inputs must share one dtype");
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name, " is on ",
              ref.device(), "; all inputs must share one device");
}

void shape_is(const char* op, const char* name, const Tensor& t, at::IntArrayRef shape, const char* what) {
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have ", what, " = ", shape_str(shape), ", got ",
              shape_str(t.sizes()));
}

// A tensor of the given shape and dtype on ref's device (the backward's saved outputs and incoming gradients).
void exactly(const char* op, const char* name, const Tensor& t, at::IntArrayRef shape, const char* what,
             at::ScalarType dtype, const Tensor& ref) {
  shape_is(op, name, t, shape, what);
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must have dtype ", dtype_str(dtype), ", got ",
              dtype_str(t.scalar_type()));
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but q is on ", ref.device());
}

void mask(const char* op, const char* name, const OptTensor& m, at::IntArrayRef shape, const Tensor& q,
          const char* what) {
  if (!m) return;
  TORCH_CHECK(m->scalar_type() == at::kBool, op, ": ", name, " must be a bool tensor (True = ", what,
              "), got ", dtype_str(m->scalar_type()));
  TORCH_CHECK(m->sizes() == shape, op, ": ", name, " must have shape ", shape_str(shape), ", got ",
              shape_str(m->sizes()));
  TORCH_CHECK(m->device() == q.device(), op, ": ", name, " is on ", m->device(), " but q is on ", q.device());
}

// Checks sparsity >= 1 and that the sequence of length L, padded to a multiple of k^2, is representable: k^2, the
// padded length Lp and the padded tensor (outer, Lp, inner elements per row) all fit int64 (k^2 overflowing to 0
// was a division by zero in the index math). Returns Lp / k, the rows per sub-sequence.
int64_t checked_sub_length(const char* op, int64_t k, int64_t L, const char* name, at::IntArrayRef shape,
                           int64_t outer, int64_t inner) {
  TORCH_CHECK(k >= 1, op, ": sparsity must be an int >= 1, got ", k);
  int64_t kk = 0, Lp = 0, numel = 0;
  const bool fits = !__builtin_mul_overflow(k, k, &kk) &&
                    !__builtin_mul_overflow(L / kk + (L % kk != 0), kk, &Lp) &&
                    !__builtin_mul_overflow(outer, Lp, &numel) && !__builtin_mul_overflow(numel, inner, &numel);
  TORCH_CHECK(fits, op, ": sparsity=", k, " is too large for ", name, " of shape ", shape_str(shape), ": ", name,
              " padded along dim 1 to a multiple of sparsity^2 would have more than 2^63 - 1 elements");
  return Lp / k;
}

int64_t row_numel(const Tensor& x) {
  int64_t n = 1;
  for (int64_t d = 2; d < x.dim(); ++d) n *= x.size(d);
  return n;
}

void float_dtype(const char* op, const char* name, const Tensor& t) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat || s == at::kDouble, op, ": ", name,
              " must be a floating tensor (torch.float16, torch.bfloat16, torch.float32, torch.float64), got ",
              dtype_str(s));
}

// Every input of the attention forward (shared by the backward); returns T, the text length (0 without text).
int64_t check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& text_q,
                        const OptTensor& text_k, const OptTensor& text_v, const OptTensor& text_mask,
                        const OptTensor& video_mask, int64_t sparsity, double scale) {
  dims(op, "q", q, 4);
  float_dtype(op, "q", q);
  shape_is(op, "k", k, q.sizes(), "the shape of q (B, L, H, D)");
  shape_is(op, "v", v, q.sizes(), "the shape of q (B, L, H, D)");
  same_kind(op, "k", k, q, "q");
  same_kind(op, "v", v, q, "q");
  const int64_t B = q.size(0), L = q.size(1), H = q.size(2), D = q.size(3);
  checked_sub_length(op, sparsity, L, "q", q.sizes(), B, H * D);
  TORCH_CHECK(std::isfinite(scale), op, ": scale must be a finite float, got ", scale);
  const bool tq = text_q.has_value(), tk = text_k.has_value(), tv = text_v.has_value();
  if (tq != tk || tk != tv) {
    std::string given, missing;
    auto add = [](std::string& list, const char* name) { list += (list.empty() ? "" : ", ") + std::string(name); };
    add(tq ? given : missing, "text_q");
    add(tk ? given : missing, "text_k");
    add(tv ? given : missing, "text_v");
    TORCH_CHECK(false, op, ": text_q, text_k and text_v go together: got ", given, " without ", missing);
  }
  if (!tq) {
    TORCH_CHECK(!text_mask, op, ": text_mask was given without text_q, text_k, text_v");
    mask(op, "video_mask", video_mask, {B, L}, q, "keep");
    return 0;
  }
  dims(op, "text_q", *text_q, 4);
  const int64_t T = text_q->size(1);
  TORCH_CHECK(text_q->size(0) == B && T >= 1 && text_q->size(2) == H && text_q->size(3) == D, op,
              ": text_q must have shape (B, T, H, D) = (", B, ", T>=1, ", H, ", ", D, ") to match q, got ",
              shape_str(text_q->sizes()));
  shape_is(op, "text_k", *text_k, text_q->sizes(), "the shape of text_q (B, T, H, D)");
  shape_is(op, "text_v", *text_v, text_q->sizes(), "the shape of text_q (B, T, H, D)");
  same_kind(op, "text_q", *text_q, q, "q");
  same_kind(op, "text_k", *text_k, q, "q");
  same_kind(op, "text_v", *text_v, q, "q");
  mask(op, "text_mask", text_mask, {B, T}, q, "real token");
  mask(op, "video_mask", video_mask, {B, L}, q, "keep");
  return T;
}

}  // namespace

Tensor checked_reorder(const Tensor& x, int64_t sparsity, bool group) {
  TORCH_CHECK(x.dim() >= 2, "skiparse.reorder: x must have at least 2 dims (B, L, ...), got shape ",
              shape_str(x.sizes()));
  checked_sub_length("skiparse.reorder", sparsity, x.size(1), "x", x.sizes(), x.size(0), row_numel(x));
  return reorder(x, sparsity, group);
}

Tensor checked_restore(const Tensor& x, int64_t sparsity, bool group, int64_t length) {
  constexpr const char* op = "skiparse.restore";
  TORCH_CHECK(x.dim() >= 2, op, ": x must have at least 2 dims (k*B, Lp/k, ...), got shape ", shape_str(x.sizes()));
  TORCH_CHECK(sparsity >= 1, op, ": sparsity must be an int >= 1, got ", sparsity);
  TORCH_CHECK(x.size(0) % sparsity == 0, op, ": x dim 0 must be k*B with k = sparsity = ", sparsity, ", got ",
              x.size(0));
  TORCH_CHECK(length >= 0, op, ": length must be an int >= 0 (the original sequence length), got ", length);
  auto out_shape = x.sizes().vec();
  out_shape[0] /= sparsity;
  out_shape[1] = length;
  const int64_t rows = checked_sub_length(op, sparsity, length, "the output", out_shape, out_shape[0], row_numel(x));
  TORCH_CHECK(x.size(1) == rows, op, ": length=", length, " does not match x: a sequence of length ", length,
              " padded to a multiple of k^2 = ", sparsity * sparsity, " has ", rows,
              " rows per sub-sequence, but x.shape[1] = ", x.size(1));
  return restore(x, sparsity, group, length);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> checked_attention_forward(
    const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& text_q, const OptTensor& text_k,
    const OptTensor& text_v, const OptTensor& text_mask, const OptTensor& video_mask, int64_t sparsity, bool group,
    double scale) {
  check_attention("skiparse.attention", q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, scale);
  return attention_forward(q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group, scale);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> checked_attention_backward(
    const Tensor& dout, const Tensor& dtext_out, const Tensor& q, const Tensor& k, const Tensor& v,
    const OptTensor& text_q, const OptTensor& text_k, const OptTensor& text_v, const OptTensor& text_mask,
    const OptTensor& video_mask, int64_t sparsity, bool group, double scale, const Tensor& out, const Tensor& lse,
    const Tensor& text_parts, const Tensor& text_lse) {
  constexpr const char* op = "skiparse.attention_backward";
  const int64_t T = check_attention(op, q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, scale);
  const int64_t B = q.size(0), L = q.size(1), H = q.size(2), D = q.size(3);
  // The forward's outputs and their gradients, as the forward returns them (stats in fp32, fp64 for fp64 inputs).
  const auto dt = q.scalar_type(), stats = dt == at::kDouble ? at::kDouble : at::kFloat;
  exactly(op, "dout", dout, q.sizes(), "the shape of q (B, L, H, D)", dt, q);
  exactly(op, "out", out, q.sizes(), "the shape of q (B, L, H, D)", dt, q);
  exactly(op, "dtext_out", dtext_out, {B, T, H, D}, "shape (B, T, H, D)", dt, q);
  exactly(op, "lse", lse, {B, H, L}, "shape (B, H, L)", stats, q);
  exactly(op, "text_parts", text_parts, {B, sparsity, T, H, D}, "shape (B, sparsity, T, H, D)", stats, q);
  exactly(op, "text_lse", text_lse, {B, H, sparsity, T}, "shape (B, H, sparsity, T)", stats, q);
  return attention_backward(dout, dtext_out, q, k, v, text_q, text_k, text_v, text_mask, video_mask, sparsity, group,
                            scale, out, lse, text_parts, text_lse);
}

Tensor checked_conv3d_3x3(const Tensor& input, const Tensor& weight, const OptTensor& bias,
                          const OptTensor& context) {
  constexpr const char* op = "skiparse.conv3d_3x3";
  dims(op, "input", input, 5);
  dims(op, "weight", weight, 5);
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble, op,
              ": the CPU kernel takes a float32 or float64 input, got ", dtype_str(input.scalar_type()));
  same_kind(op, "weight", weight, input, "input");
  const int64_t B = input.size(0), C = input.size(1), H = input.size(3), W = input.size(4);
  TORCH_CHECK(C >= 1, op, ": input must have at least one channel (B, C_in >= 1, T, H, W), got shape ",
              shape_str(input.sizes()));
  TORCH_CHECK(weight.size(1) == C && weight.size(3) == 3 && weight.size(4) == 3, op,
              ": weight must be (C_out, C_in=", C, ", kt, 3, 3), got shape ", shape_str(weight.sizes()));
  int64_t frames = input.size(2);
  if (context) {
    dims(op, "context", *context, 5);
    same_kind(op, "context", *context, input, "input");
    TORCH_CHECK(context->size(0) == B && context->size(1) == C && context->size(3) == H && context->size(4) == W,
                op, ": context must be (B=", B, ", C_in=", C, ", Tc, H=", H, ", W=", W,
                "), the frames before input; got shape ", shape_str(context->sizes()));
    frames += context->size(2);
  }
  TORCH_CHECK(weight.size(2) >= 1 && weight.size(2) <= frames, op, ": weight's temporal size kt=", weight.size(2),
              " must be in 1..T=", frames, " (the frames of context and input)");
  if (bias) {
    dims(op, "bias", *bias, 1);
    same_kind(op, "bias", *bias, input, "input");
    TORCH_CHECK(bias->size(0) == weight.size(0), op, ": bias must be (C_out=", weight.size(0), ",), got shape ",
                shape_str(bias->sizes()));
  }
  return conv3d_3x3(input, weight, bias, context);
}

}  // namespace skiparse::cpu
