// Fused reorder / restore on the CPU: one row copy per (sub-sequence, position), addressed by the index math.
#include <ATen/Parallel.h>

#include <cstring>

#include "../skiparse/index.h"
#include "kernels.h"

namespace skiparse::cpu {
namespace {

// Rows of `x` viewed as (B, N, F) with F contiguous elements per row.
int64_t row_bytes(const Tensor& x) {
  int64_t f = 1;
  for (int64_t d = 2; d < x.dim(); ++d) f *= x.size(d);
  return f * static_cast<int64_t>(x.element_size());
}

}  // namespace

Tensor reorder(const Tensor& x_, int64_t k, bool group) {
  TORCH_CHECK(x_.dim() >= 2 && k >= 1, "skiparse.reorder: x must be (B, L, ...) and sparsity >= 1");
  const Tensor x = x_.contiguous();
  const int64_t B = x.size(0), L = x.size(1), Ls = sub_length(L, k), bytes = row_bytes(x);
  auto sizes = x.sizes().vec();
  sizes[0] = k * B;
  sizes[1] = Ls;
  Tensor out = at::empty(sizes, x.options());
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  // Output row (s*B + b, pos) <- input row (b, natural_index(s, pos)), zeros for padding.
  at::parallel_for(0, k * B * Ls, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t s = r / (B * Ls), b = (r / Ls) % B, pos = r % Ls;
      const int64_t i = natural_index(s, pos, k, group);
      if (i < L) {
        std::memcpy(dst + r * bytes, src + (b * L + i) * bytes, bytes);
      } else {
        std::memset(dst + r * bytes, 0, bytes);
      }
    }
  });
  return out;
}

Tensor restore(const Tensor& x_, int64_t k, bool group, int64_t length) {
  TORCH_CHECK(x_.dim() >= 2 && k >= 1 && x_.size(0) % k == 0 && x_.size(1) == sub_length(length, k),
              "skiparse.restore: x must be (k*B, ceil_pad(length, k*k)/k, ...)");
  const Tensor x = x_.contiguous();
  const int64_t B = x.size(0) / k, Ls = x.size(1), bytes = row_bytes(x);
  auto sizes = x.sizes().vec();
  sizes[0] = B;
  sizes[1] = length;
  Tensor out = at::empty(sizes, x.options());
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  // Output row (b, i) <- input row (sub_of(i)*B + b, pos_of(i)).
  at::parallel_for(0, B * length, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / length, i = r % length;
      std::memcpy(dst + r * bytes, src + ((sub_of(i, k, group) * B + b) * Ls + pos_of(i, k, group)) * bytes, bytes);
    }
  });
  return out;
}

}  // namespace skiparse::cpu
