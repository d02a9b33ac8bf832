// GEMMs of the CPU kernels on raw pointers with leading dimensions.
// - fp32/fp64: the BLAS `sgemm_`/`dgemm_` that libtorch_cpu exports (MKL on x86 wheels: the GEMM of PyTorch's own
//   CPU flash attention); at::addmm_out on from_blob views where the symbols are absent.
// - bf16/fp16 in their own dtype with fp32 accumulation: torch's oneDNN brgemm ukernel (AMX tiles), with the B
//   operand packed once into oneDNN's pair-interleaved (VNNI) layout. Used where cpublas::could_pack says the CPU
//   (and ONEDNN_MAX_CPU_ISA) allows it; elsewhere the kernels convert tiles to fp32 and use sgemm_.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Version.h>
#include <ATen/native/CPUBlas.h>

#include <cstdint>
#include <type_traits>
#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

// One copy per ISA build (CPU_CAPABILITY, as in attention.h): the AVX-512 build's copies of these inline functions
// must never stand in for the AVX2 build's at link time.
namespace skiparse::cpu::CPU_CAPABILITY {

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

template <typename T>
constexpr bool kReduced = std::is_same_v<T, at::BFloat16> || std::is_same_v<T, at::Half>;

// Whether bf16/fp16 GEMMs of inner dimension multiple of 2 run natively (brgemm on packed B) here.
template <typename T>
bool native_lowp() {
  if constexpr (kReduced<T>) {
    // torch's pack() also needs ATen's AVX-512 capability: on an AMX CPU capped by ATEN_CPU_CAPABILITY=avx2 (or
    // default) oneDNN could pack but torch refuses, so the capped process takes the fp32 path like an AVX2 CPU.
    static const bool ok = at::get_cpu_capability() == "AVX512" &&
                           at::native::cpublas::could_pack(c10::CppTypeToScalarType<T>::value);
    return ok;
  } else {
    return false;
  }
}

// A B operand [K, N] packed for brgemm: oneDNN's pair-interleaved (VNNI) layout, rows k and k+1 of column n side by
// side at out[(k / 2) * 2 ld + 2 n + k % 2], ld = N rounded up to 16 with zero columns. K must be even; callers pad
// with a zero row. Packed whole, not in the 64-column blocks that torch's pack() is limited to, so that each GEMM
// is one brgemm call over every column: the A tile is then loaded once per call instead of once per 64 columns.
inline int64_t packed_ld(int64_t n) { return (n + 15) / 16 * 16; }
inline int64_t packed_size(int64_t K, int64_t N) { return K * packed_ld(N); }

// Rows k and k + 1 of B (r0, r1; r1 null past an odd K) into their VNNI row `out` of pack_b's layout.
template <typename T>
void pack_pair(const T* r0, const T* r1, int64_t N, T* out) {
  int64_t n = 0;
#if defined(CPU_CAPABILITY_AVX512)
  if (sizeof(T) == 2 && r1) {  // 32 columns at a time: two 16-bit two-source permutes per 64 output bytes
    alignas(64) static constexpr uint16_t kLo[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                     8,  40, 9,  41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    alignas(64) static constexpr uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                     24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
    const __m512i lo = _mm512_load_si512(kLo), hi = _mm512_load_si512(kHi);
    for (; n + 32 <= N; n += 32) {
      const __m512i a = _mm512_loadu_si512(r0 + n), b = _mm512_loadu_si512(r1 + n);
      _mm512_storeu_si512(out + 2 * n, _mm512_permutex2var_epi16(a, lo, b));
      _mm512_storeu_si512(out + 2 * n + 32, _mm512_permutex2var_epi16(a, hi, b));
    }
  }
#endif
  for (; n < N; ++n) {
    out[2 * n] = r0[n];
    out[2 * n + 1] = r1 ? r1[n] : T(0);
  }
  std::fill(out + 2 * N, out + 2 * packed_ld(N), T(0));
}

template <typename T>
void pack_b(int64_t K, int64_t N, const T* b, int64_t ldb, T* out) {
  for (int64_t k = 0; k < K; k += 2) pack_pair(b + k * ldb, b + (k + 1) * ldb, N, out + k * packed_ld(N));
}

// C[M, N] (+)= A[M, K] @ B with B packed by pack_b (same K, N); A row-major bf16/fp16, C fp32.
template <typename T>
void gemm_packed(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* bp, float* c, int64_t ldc,
                 bool add) {
  if (M == 0 || N == 0) return;
  at::native::cpublas::brgemm(M, N, K, lda, packed_ld(N), ldc, add, a, bp, c, true);
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
