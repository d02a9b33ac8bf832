// Row-major GEMM on raw pointers with leading dimensions, for tiles that are strided views of a tensor.
// Uses the BLAS `sgemm_`/`dgemm_` that libtorch_cpu exports (MKL on x86 wheels: the GEMM of PyTorch's own CPU
// flash attention); falls back to at::addmm_out on from_blob views where the symbols are absent.
#pragma once

#include <ATen/ATen.h>

#include <type_traits>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace skiparse::cpu {

inline bool has_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major; op(A) is [M,K] (A is stored [K,M] when ta).
template <typename A>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, A alpha, const A* a, int64_t lda, const A* b,
          int64_t ldb, A beta, A* c, int64_t ldc) {
  static_assert(std::is_same_v<A, float> || std::is_same_v<A, double>);
  if (M == 0 || N == 0) return;
  if (has_blas()) {
    // Row-major C = A B is column-major C^T = B^T A^T: swap the operands.
    const char opa = tb ? 'T' : 'N', opb = ta ? 'T' : 'N';
    const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
    const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
    if constexpr (std::is_same_v<A, float>) {
      sgemm_(&opa, &opb, &m, &n, &k, &alpha, b, &la, a, &lb, &beta, c, &lc);
    } else {
      dgemm_(&opa, &opb, &m, &n, &k, &alpha, b, &la, a, &lb, &beta, c, &lc);
    }
    return;
  }
  const auto dtype = std::is_same_v<A, float> ? at::kFloat : at::kDouble;
  auto view = [dtype](const A* p, int64_t rows, int64_t cols, int64_t ld, bool t) {
    auto x = at::from_blob(const_cast<A*>(p), {t ? cols : rows, t ? rows : cols}, {ld, 1}, dtype);
    return t ? x.t() : x;
  };
  auto out = at::from_blob(c, {M, N}, {ldc, 1}, dtype);
  at::addmm_out(out, out, view(a, M, K, lda, ta), view(b, K, N, ldb, tb), beta, alpha);
}

}  // namespace skiparse::cpu
