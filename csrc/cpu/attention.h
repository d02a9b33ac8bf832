// Shared pieces of the fused CPU Skiparse attention kernels (forward in attention_fwd.cpp, backward in
// attention_bwd.cpp): operands addressed in place, the tile lists of a sub-sequence, tile staging and the
// vectorised row primitives. Compute is fp32 (fp64 for fp64 inputs, so gradcheck can test the kernels); bf16/fp16
// GEMMs run in their dtype with fp32 accumulation where the CPU has the units (native_lowp, gemm.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "../skiparse/index.h"
#include "gemm.h"

// One copy of everything below per ISA build (csrc/cpu/isa/*.cpp; CPU_CAPABILITY names it, as in ATen), so that
// the AVX2 and AVX-512 builds of these inline functions and templates never merge at link time.
namespace skiparse::cpu::CPU_CAPABILITY {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
// Compute type: fp32, except fp64 for fp64 inputs.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
template <typename A>
constexpr A kInf = std::numeric_limits<A>::infinity();

// Tile sizes (rows). Query tiles x key tiles of fp32 scores stay within L2; a lane is cut into equal tiles.
constexpr int64_t kQueryTile = 256;
constexpr int64_t kKeyTile = 512;

// Scratch of the kernels' tiles, aligned to cache lines. A plain std::vector of a tile (hundreds of KiB) comes from
// mmap at a 16-byte offset into its page, so every 64-byte row load of the score tile straddled two cache lines
// (and so did AMX's tile loads and stores): the bf16 forward took 1.3x as long.
template <typename X>
struct LineAligned {
  using value_type = X;
  LineAligned() = default;
  template <typename Y>
  LineAligned(const LineAligned<Y>&) {}
  X* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(X) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<X*>(p);
  }
  void deallocate(X* p, size_t) { std::free(p); }
  template <typename Y>
  bool operator==(const LineAligned<Y>&) const { return true; }
  template <typename Y>
  bool operator!=(const LineAligned<Y>&) const { return false; }
};
template <typename X>
using TileBuf = std::vector<X, LineAligned<X>>;

// A (B, N, H, D) tensor with unit last stride, read or written where it lives.
template <typename T>
struct Operand {
  T* data = nullptr;
  int64_t sB = 0, sN = 0, sH = 0;
  Operand() = default;
  explicit Operand(const Tensor& t)
      : data(t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr),
        sB(t.defined() ? t.stride(0) : 0),
        sN(t.defined() ? t.stride(1) : 0),
        sH(t.defined() ? t.stride(2) : 0) {}
  T* row(int64_t b, int64_t n, int64_t h) const { return data + b * sB + n * sN + h * sH; }
};

// Rows of one segment (the video lanes or the text): natural rows row0 + i*stride, i < n.
struct Run {
  int64_t row0, stride, n;
};

// A tile: one or more runs of one segment. A tile cut from one long lane is a single strided view of the
// tensor; short lanes (group-skip on small videos) are packed whole into one tile so that GEMMs stay large.
struct Tile {
  bool text;
  std::vector<Run> runs;
  int64_t n;

  // f(i, row) for the tile's i-th row and its natural (or text) row index.
  template <typename F>
  void for_each_row(F&& f) const {
    int64_t i = 0;
    for (const Run& r : runs)
      for (int64_t j = 0; j < r.n; ++j) f(i++, r.row0 + j * r.stride);
  }
};

// The problem, with everything the kernels need to walk a sub-sequence.
struct Problem {
  int64_t B, L, H, D, T, k;
  bool group;
  double scale;
  const bool* video_mask;  // (B, L) contiguous or null; true = keep
  const bool* text_mask;   // (B, T) contiguous or null; true = real token

  // Tiles of sub-sequence `sub`, each at most `tile` rows, video lanes first, then the text rows.
  // With `across_lanes`, the video lanes are taken as one sequence and cut into near-equal parts that may span
  // lanes (a tile's rows are gathered anyway in the forward): group-skip's short lanes (k = 8 at the paper shape:
  // 576 rows) then give full 512-key and 256-query tiles instead of parts of 288 and 192.
  std::vector<Tile> tiles(int64_t sub, int64_t tile, bool across_lanes = false) const {
    std::vector<Tile> out;
    auto add = [&](bool text, std::vector<Run> runs) {
      int64_t n = 0;
      for (const Run& r : runs) n += r.n;
      if (n > 0) out.push_back({text, std::move(runs), n});
    };
    // Near-equal parts of a long run, rounded up to 32 rows: the GEMMs then have no ragged AMX tiles and the row
    // passes no scalar tails but in the last part (a 2304-row lane in 5 parts of 461 made group k = 4 1.3x slower).
    auto part_size = [&](int64_t count) {  // (0 rows: no part, and no division by zero)
      const int64_t parts = std::max<int64_t>(1, (count + tile - 1) / tile);
      return std::min(tile, ((count + parts - 1) / parts + 31) / 32 * 32);
    };
    auto cut = [&](bool text, int64_t start, int64_t stride, int64_t count) {
      const int64_t size = part_size(count);
      for (int64_t i = 0; i < count; i += size) add(text, {{start + i * stride, stride, std::min(size, count - i)}});
    };
    std::vector<Lane> lanes;
    int64_t total = 0;
    for (int64_t j = 0; j < num_lanes(k, group); ++j) {
      const Lane ln = lane(sub, j, L, k, group);
      if (ln.count > 0) lanes.push_back(ln);
      total += ln.count;
    }
    if (across_lanes) {
      const int64_t size = part_size(total);
      std::vector<Run> runs;
      int64_t n = 0;
      for (const Lane& ln : lanes) {
        for (int64_t i = 0; i < ln.count;) {
          const int64_t take = std::min(ln.count - i, size - n);
          runs.push_back({ln.start + i * ln.stride, ln.stride, take});
          i += take;
          n += take;
          if (n == size) {
            add(false, std::move(runs));
            runs.clear();
            n = 0;
          }
        }
      }
      add(false, std::move(runs));
    } else {
      std::vector<Run> packed;
      int64_t packed_n = 0;
      for (const Lane& ln : lanes) {
        if (2 * ln.count > tile) {
          cut(false, ln.start, ln.stride, ln.count);
          continue;
        }
        if (packed_n + ln.count > tile) {
          add(false, std::move(packed));
          packed.clear();
          packed_n = 0;
        }
        packed.push_back({ln.start, ln.stride, ln.count});
        packed_n += ln.count;
      }
      add(false, std::move(packed));
    }
    if (T > 0) cut(true, 0, 1, T);
    return out;
  }

  // Columns of key tile `t` of batch item `b` that are masked.
  void masked_columns(int64_t b, const Tile& t, std::vector<int64_t>& cols) const {
    cols.clear();
    const bool* m = t.text ? text_mask : video_mask;
    if (!m) return;
    const bool* mb = m + b * (t.text ? T : L);
    t.for_each_row([&](int64_t i, int64_t row) {
      if (!mb[row]) cols.push_back(i);
    });
  }
};

// The query and key tiles of every sub-sequence.
struct Schedule {
  std::vector<std::vector<Tile>> queries, keys;
  // across_lanes: see Problem::tiles (the forward; in the backward it measured no faster, bf16 group k = 8 3% slower).
  explicit Schedule(const Problem& P, bool across_lanes = false) : queries(P.k), keys(P.k) {
    for (int64_t s = 0; s < P.k; ++s) {
      queries[s] = P.tiles(s, kQueryTile, across_lanes);
      keys[s] = P.tiles(s, kKeyTile, across_lanes);
    }
  }
};

// Runs f(b, h, sub, i, scratch) for every (b, h, sub) and i < count(sub), in parallel, one Scratch per thread
// chunk. The items of a sub-sequence are adjacent, so its keys stay in cache.
template <typename Scratch, typename Count, typename F>
void parallel_items(const Problem& P, Count count, F f, bool lowp) {
  std::vector<std::array<int64_t, 4>> work;
  for (int64_t b = 0; b < P.B; ++b)
    for (int64_t h = 0; h < P.H; ++h)
      for (int64_t s = 0; s < P.k; ++s)
        for (int64_t i = 0; i < static_cast<int64_t>(count(s)); ++i) work.push_back({b, h, s, i});
  at::parallel_for(0, static_cast<int64_t>(work.size()), 1, [&](int64_t begin, int64_t end) {
    Scratch w(P.D, lowp);
    for (int64_t i = begin; i < end; ++i) f(work[i][0], work[i][1], work[i][2], work[i][3], w);
    if (lowp) at::native::cpublas::brgemm_release();  // the thread's AMX tile state
  });
}

// Write the tile's rows of `op` from `src` (compute type, leading dim D), converting to T.
template <typename T, typename A>
void store(const Operand<T>& op, int64_t b, int64_t h, const Tile& t, int64_t D, const A* src) {
  t.for_each_row([&](int64_t i, int64_t row) {
    T* dst = op.row(b, row, h);
    const A* s = src + i * D;
    if constexpr (std::is_same_v<T, A>) {
      std::copy(s, s + D, dst);
    } else if constexpr (std::is_same_v<A, float> && kReduced<T>) {
      at::vec::convert(s, dst, D);  // vectorised rounding
    } else {
      for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(s[d]);
    }
  });
}

// A tile's rows of `op` as O (its own dtype, or the compute type): [rows, D] with zero rows past t.n, or
// transposed [D, ld] with zero columns past t.n.
template <typename T, typename O = T>
void gather(const Operand<T>& op, int64_t b, int64_t h, const Tile& t, int64_t D, O* buf, bool transposed,
            int64_t rows_or_ld) {
  t.for_each_row([&](int64_t i, int64_t row) {
    const T* src = op.row(b, row, h);
    if (transposed) {
      for (int64_t d = 0; d < D; ++d) buf[d * rows_or_ld + i] = static_cast<O>(src[d]);
    } else if constexpr (std::is_same_v<T, O>) {
      std::copy(src, src + D, buf + i * D);
    } else {
      at::vec::convert(src, buf + i * D, D);
    }
  });
  if (!transposed) {
    std::fill(buf + t.n * D, buf + rows_or_ld * D, O(0));
  } else {
    for (int64_t d = 0; d < D; ++d) std::fill(buf + d * rows_or_ld + t.n, buf + (d + 1) * rows_or_ld, O(0));
  }
}

// Gathers the tile's rows of an operand into `buf` (compute type, leading dim D), converted and optionally
// scaled: the CPU analogue of loading a tile into shared memory. The GEMMs then see contiguous operands whatever
// the row stride (up to k^2 * H * D elements for group-skip); the copy is O(rows * D) against the GEMM's
// O(rows^2 * D). Reading fp32 rows in place instead was not measurably faster on the (noisy) 2-core machines.
template <typename T, typename A = acc_t<T>>
const A* stage(const Operand<T>& op, int64_t b, int64_t h, const Tile& t, int64_t D, A* buf, A mul = 1) {
  gather(op, b, h, t, D, buf, false, t.n);
  if (mul != 1)
    for (int64_t i = 0; i < t.n * D; ++i) buf[i] *= mul;
  return buf;
}

inline int64_t even(int64_t n) { return (n + 1) / 2 * 2; }

// A tile's rows as a GEMM operand in its own dtype. Packed: a brgemm B operand, transposed (B = X^T, [D, n]) or
// as rows (B = X, [even(n), D]); D must be even. Plain: an A operand, rows [n, D] or transposed [D, even(n)].
struct Form {
  bool value, transposed, packed;
};
inline int64_t form_size(int64_t n, int64_t D, Form f) {
  if (f.packed) return f.transposed ? packed_size(D, n) : packed_size(even(n), D);
  return D * even(n);
}
#if defined(CPU_CAPABILITY_AVX512)
// out[c * ldo + 2 r + e] = rows[r][d0 + 2 c + e] for r, c < 16, e < 2: the 32-bit (d, d + 1) pairs of 16 rows
// transposed in registers (32-bit, then 64-bit interleaves within 128-bit lanes, then two rounds of lane shuffles)
// instead of 256 scalar 4-byte copies.
template <typename T>
inline void transpose_pairs_16x16(const T* const* rows, int64_t d0, T* out, int64_t ldo) {
  __m512i r[16], a[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(rows[i] + d0);
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // r[4 i + j], lane L: column 4 L + j of rows 4 i .. 4 i + 3
    r[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i c0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), c1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);
    const __m512i c2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    const __m512i c3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
    _mm512_storeu_si512(out + (j)*ldo, _mm512_shuffle_i32x4(c0, c2, 0x88));       // lane 0: column j
    _mm512_storeu_si512(out + (4 + j) * ldo, _mm512_shuffle_i32x4(c1, c3, 0x88));  // lane 1
    _mm512_storeu_si512(out + (8 + j) * ldo, _mm512_shuffle_i32x4(c0, c2, 0xDD));  // lane 2
    _mm512_storeu_si512(out + (12 + j) * ldo, _mm512_shuffle_i32x4(c1, c3, 0xDD)); // lane 3
  }
}
#endif

// n rows of D (even) elements packed as a brgemm B operand in its VNNI layout (gemm.h), B = X^T ([D, n]) or
// B = X ([even(n), D]), written straight from the row pointers: as B = X^T each row's (d, d+1) pairs stay adjacent,
// so that form is a transpose of 32-bit pairs; as B = X, rows i and i+1 are interleaved. (Gathering first and
// packing after took two scattered passes, 4% of a k = 8 forward.)
template <typename T>
void pack_rows(const T* const* rows, int64_t n, int64_t D, bool transposed, T* out) {
  if (transposed) {
    // 16 rows at a time, so that each (d, d+1) pair row of `out` is written 64 contiguous bytes at a time.
    const int64_t ld = packed_ld(n);
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
      const int64_t m = std::min<int64_t>(16, n - i0);
      int64_t d0 = 0;
#if defined(CPU_CAPABILITY_AVX512)
      if (m == 16)  // 32 columns (16 pairs) of 16 rows at a time: a 16 x 16 transpose of 32-bit pairs
        for (; d0 + 32 <= D; d0 += 32) transpose_pairs_16x16(rows + i0, d0, out + d0 * ld + 2 * i0, 2 * ld);
#endif
      for (int64_t d = d0; d < D; d += 2) {
        T* o = out + d * ld + 2 * i0;
        for (int64_t r = 0; r < m; ++r) std::memcpy(o + 2 * r, rows[i0 + r] + d, 2 * sizeof(T));
      }
    }
    for (int64_t d = 0; d < D; d += 2) std::fill(out + d * ld + 2 * n, out + (d + 2) * ld, T(0));
  } else {
    for (int64_t i = 0; i < n; i += 2) pack_pair(rows[i], i + 1 < n ? rows[i + 1] : nullptr, D, out + i * packed_ld(D));
  }
}

template <typename T>
void form_packed(const Operand<T>& op, int64_t b, int64_t h, const Tile& t, int64_t D, bool transposed, T* out) {
  std::array<const T*, kKeyTile> rows;
  t.for_each_row([&](int64_t i, int64_t row) { rows[i] = op.row(b, row, h); });
  pack_rows(rows.data(), t.n, D, transposed, out);
}

// Form f of a tile into `out`; O is T, or the compute type for tiles staged for sgemm/dgemm.
template <typename T, typename O = T>
void form_tile(const Operand<T>& op, int64_t b, int64_t h, const Tile& t, int64_t D, Form f, O* out) {
  if constexpr (std::is_same_v<T, O> && kReduced<T>) {  // (only bf16/fp16 tiles are ever packed)
    if (f.packed) return form_packed(op, b, h, t, D, f.transposed, out);
  }
  gather(op, b, h, t, D, out, f.transposed, f.transposed ? even(t.n) : t.n);
}

// The key tiles of sub-sequences in the given forms, formed once per sub-sequence (or per group of its tiles) and
// shared by its query tiles. A unit is one (b, h, sub-sequence), numbered u = (b * H + h) * k + sub. Units are
// packed in batches of consecutive units, each at its own offset of a caller's buffer; a run of tiles [j0, j1)
// of one unit is packed alone with tile j0 first. O is the element type of the forms: T for the native bf16/fp16
// GEMMs, the compute type where tiles are staged for sgemm/dgemm.
template <typename T, typename O = T>
struct KeyPacks {
  const Problem& P;
  const Schedule& S;
  std::vector<Form> forms;
  std::array<std::array<Operand<T>, 2>, 2> ops;  // [text][value]: k, v, text_k, text_v
  int64_t nf;
  std::vector<std::vector<int64_t>> offset_of;  // [s][j * nf + f]: offset of form f of tile j in a unit; then its size

  KeyPacks(const Problem& P_, const Schedule& S_, std::vector<Form> forms_,
           std::array<std::array<Operand<T>, 2>, 2> ops_)
      : P(P_), S(S_), forms(std::move(forms_)), ops(ops_), nf(static_cast<int64_t>(forms.size())), offset_of(P.k) {
    for (int64_t s = 0; s < P.k; ++s) {
      int64_t size = 0;
      for (const Tile& t : S.keys[s])
        for (const Form& f : forms) {
          offset_of[s].push_back(size);
          size += form_size(t.n, P.D, f);
        }
      offset_of[s].push_back(size);
    }
  }
  int64_t sub(int64_t u) const { return u % P.k; }
  int64_t size(int64_t u) const { return offset_of[sub(u)].back(); }
  // Elements of tiles [j0, j1) of sub-sequence s.
  int64_t span(int64_t s, size_t j0, size_t j1) const { return offset_of[s][j1 * nf] - offset_of[s][j0 * nf]; }

  // Tiles [j0, j1) of unit u into buf, tile j0 first.
  void pack_tiles(int64_t u, size_t j0, size_t j1, O* buf) const {
    const int64_t s = sub(u), bh = u / P.k;
    for (size_t j = j0; j < j1; ++j) {
      const Tile& t = S.keys[s][j];
      for (int64_t f = 0; f < nf; ++f)
        form_tile(ops[t.text][forms[f].value], bh / P.H, bh % P.H, t, P.D, forms[f], get(buf, s, j, f, j0));
    }
  }
  // Units [u0, u1) into buf, unit u at buf + offsets[u - u0], in parallel over their tiles.
  void pack(int64_t u0, int64_t u1, const std::vector<int64_t>& offsets, O* buf) const {
    std::vector<std::array<int64_t, 2>> work;  // (unit, tile)
    for (int64_t u = u0; u < u1; ++u)
      for (size_t j = 0; j < S.keys[sub(u)].size(); ++j) work.push_back({u, static_cast<int64_t>(j)});
    at::parallel_for(0, static_cast<int64_t>(work.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t u = work[i][0], j = work[i][1];
        pack_tiles(u, j, j + 1, buf + offsets[u - u0] + offset_of[sub(u)][j * nf]);
      }
    });
  }
  // Form f of key tile j of sub-sequence s, in packs at `base` that start with tile j0.
  template <typename X>  // O or const O
  X* get(X* base, int64_t s, size_t j, int64_t f, size_t j0 = 0) const {
    return base + offset_of[s][j * nf + f] - offset_of[s][j0 * nf];
  }
};

// Max of a row; NaN if the row has one. Four independent chains: one chain waits on the latency of each max, which
// made this pass cost half as much as the exp pass that follows it.
template <typename A>
A row_max(const A* x, int64_t n) {
  using V = at::vec::Vectorized<A>;
  constexpr int64_t w = V::size();
  V m0(-kInf<A>), m1(-kInf<A>), m2(-kInf<A>), m3(-kInf<A>);
  int64_t i = 0;
  for (; i + 4 * w <= n; i += 4 * w) {
    m0 = at::vec::maximum(m0, V::loadu(x + i));
    m1 = at::vec::maximum(m1, V::loadu(x + i + w));
    m2 = at::vec::maximum(m2, V::loadu(x + i + 2 * w));
    m3 = at::vec::maximum(m3, V::loadu(x + i + 3 * w));
  }
  for (; i + w <= n; i += w) m0 = at::vec::maximum(m0, V::loadu(x + i));
  V m = at::vec::maximum(at::vec::maximum(m0, m1), at::vec::maximum(m2, m3));
  A out = at::vec::vec_reduce_all<A>([](V& a, V& b) { return at::vec::maximum(a, b); }, m);
  for (; i < n; ++i) out = std::isnan(x[i]) || std::isnan(out) ? std::numeric_limits<A>::quiet_NaN() : std::max(out, x[i]);
  return out;
}

#if defined(CPU_CAPABILITY_AVX512)
// 2^x for x <= 0 (a key's exponent after the row max; NaN stays NaN): n = round(x), 2^(x - n) by a degree-5
// polynomial on [-1/2, 1/2] (relative error 7.5e-8, fit to 2^r; 2e-7 evaluated in fp32, against exp_u20's 20
// ulp), scaled by 2^n with scalef. 10 instructions per 16 values, exp_u20's clamps, conversions and integer
// exponent build took 19, and this pass is a third of the bf16 forward. -inf (a masked key) is clamped to -200,
// whose 2^-200 scalef rounds to exactly 0.
inline __m512 exp2_nonpositive(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-200.f), x);  // (max returns its second operand, x, when x is NaN)
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 y = _mm512_set1_ps(1.3276415477021263e-3f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(9.675528614453368e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.550713318186922e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.2402211996652992f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.6931469671243491f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0000000716035018f));
  return _mm512_scalef_ps(y, n);
}
constexpr float kLog2e = 1.44269504088896341f;  // exp(x) = 2^(x log2(e))
#endif

// x <- exp(x - m), returns the sum. fp32: exp2_nonpositive on AVX-512, else the fast exp_u20 that PyTorch's own
// CPU flash attention uses.
template <typename A>
A exp_sub_sum(A* x, int64_t n, A m) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<A, float>) {
    const __m512 vl = _mm512_set1_ps(kLog2e), vm = _mm512_set1_ps(-m * kLog2e);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512 e = exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), vl, vm));
      _mm512_storeu_ps(x + i, e);
      acc = _mm512_add_ps(acc, e);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < n; ++i) sum += (x[i] = std::exp(x[i] - m));
    return sum;
  }
#endif
  using V = at::vec::Vectorized<A>;
  const V vm(m);
  V acc(A(0));
  int64_t i = 0;
  for (; i + V::size() <= n; i += V::size()) {
    V e = V::loadu(x + i) - vm;
    if constexpr (std::is_same_v<A, float>) {
      e = e.exp_u20();
    } else {
      e = e.exp();
    }
    e.store(x + i);
    acc = acc + e;
  }
  A sum = at::vec::vec_reduce_all<A>([](V& a, V& b) { return a + b; }, acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  return sum;
}

// One pass over a row of raw scores x (scale > 0): p[i] = T(exp(scale * x[i] - m)) and the fp32 sum of the exps
// (taken before rounding, as FlashAttention does). The scale rides in the exponent's FMA instead of a pass of its
// own, and P is written once, in the dtype of the P V product: 1 read and 1 narrow write per score where scaling,
// the max, the exp and the conversion took 4 reads and 3 writes.
template <typename T>
float exp_scaled_sum_to(const float* x, int64_t n, float scale, float m, T* p) {
  using V = at::vec::Vectorized<float>;
  const V vs(scale), vm(-m);
  V acc(0.f);
  int64_t i = 0;
  for (; i + 2 * V::size() <= n; i += 2 * V::size()) {
    const V e0 = at::vec::fmadd(V::loadu(x + i), vs, vm).exp_u20();
    const V e1 = at::vec::fmadd(V::loadu(x + i + V::size()), vs, vm).exp_u20();
    acc = acc + e0 + e1;
    at::vec::convert_from_float<T>(e0, e1).store(p + i);
  }
  for (; i < n; i += V::size()) {  // the tail, masked (a scalar exp costs as much as a vector one)
    const int64_t c = std::min<int64_t>(V::size(), n - i);
    const V e = V::set(V(0.f), at::vec::fmadd(V::loadu(x + i, c), vs, vm).exp_u20(), c);
    acc = acc + e;
    at::vec::convert_from_float<T>(e, V(0.f)).store(p + i, c);
  }
  return at::vec::vec_reduce_all<float>([](V& a, V& b) { return a + b; }, acc);
}

#if defined(CPU_CAPABILITY_AVX512)
#define SKIPARSE_AVX512_BF16 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// The bf16 instance for CPUs with AVX512-BF16 (every CPU with AMX has it): exp(scale x - m) as
// 2^(x scale log2(e) - m log2(e)) with exp2_nonpositive, and P rounded by one RNE instruction per 32 values (as the
// generic path rounds). Masked tails instead of scalar ones.
SKIPARSE_AVX512_BF16 inline float exp_scaled_sum_to_bf16(const float* x, int64_t n, float scale, float m,
                                                         at::BFloat16* p) {
  const __m512 vs = _mm512_set1_ps(scale * kLog2e), vm = _mm512_set1_ps(-m * kLog2e);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 e0 = exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), vs, vm));
    const __m512 e1 = exp2_nonpositive(_mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), vs, vm));
    acc0 = _mm512_add_ps(acc0, e0);
    acc1 = _mm512_add_ps(acc1, e1);
    _mm512_storeu_si512(p + i, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
  }
  for (; i < n; i += 16) {
    const __mmask16 k = static_cast<__mmask16>((1u << std::min<int64_t>(16, n - i)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(k, exp2_nonpositive(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), vs, vm)));
    acc0 = _mm512_add_ps(acc0, e);
    _mm256_mask_storeu_epi16(p + i, k, (__m256i)_mm512_cvtneps_pbh(e));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#undef SKIPARSE_AVX512_BF16
#endif

// x[r] <- exp(scale x[r] - lse[r]) for r < n: the backward's P from raw scores and each row's logsumexp (for a finite
// lse the exponent is <= 0 up to rounding; the caller sets the columns of an infinite or NaN lse).
inline void exp_scaled_minus(float* x, int64_t n, float scale, const float* lse) {
  int64_t r = 0;
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 vs = _mm512_set1_ps(scale * kLog2e), vl = _mm512_set1_ps(kLog2e);
  for (; r + 16 <= n; r += 16) {
    const __m512 e = _mm512_fmsub_ps(_mm512_loadu_ps(x + r), vs, _mm512_mul_ps(_mm512_loadu_ps(lse + r), vl));
    _mm512_storeu_ps(x + r, exp2_nonpositive(e));
  }
#else
  using Vec = at::vec::Vectorized<float>;
  for (; r + Vec::size() <= n; r += Vec::size())
    (Vec::loadu(x + r) * Vec(scale) - Vec::loadu(lse + r)).exp_u20().store(x + r);
#endif
  for (; r < n; ++r) x[r] = std::exp(x[r] * scale - lse[r]);
}

// exp_scaled_sum_to with the fastest conversion this CPU has.
template <typename T>
float exp_scaled_sum_to_best(const float* x, int64_t n, float scale, float m, T* p) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, at::BFloat16>) {
    static const bool bf16 = __builtin_cpu_supports("avx512bf16");
    if (bf16) return exp_scaled_sum_to_bf16(x, n, scale, m, p);
  }
#endif
  return exp_scaled_sum_to<T>(x, n, scale, m, p);
}

template <typename A>
void scale_row(A* x, int64_t n, A a) {
  using V = at::vec::Vectorized<A>;
  at::vec::map([a](V v) { return v * V(a); }, x, x, n);
}

template <typename A>
A dot(const A* a, const A* b, int64_t n) {
  using V = at::vec::Vectorized<A>;
  return at::vec::map2_reduce_all<A>([](V x, V y) { return x * y; }, [](V x, V y) { return x + y; }, a, b, n);
}

// The op's tensor arguments, made addressable in place (unit last stride), and the problem they pose.
struct AttentionArgs {
  Tensor q, k, v, text_q, text_k, text_v, text_mask, video_mask;
  AttentionArgs(const Tensor& q_, const Tensor& k_, const Tensor& v_, const std::optional<Tensor>& tq,
                const std::optional<Tensor>& tk, const std::optional<Tensor>& tv, const std::optional<Tensor>& tm,
                const std::optional<Tensor>& vm)
      : q(unit_stride(q_)),
        k(unit_stride(k_)),
        v(unit_stride(v_)),
        text_q(tq ? unit_stride(*tq) : Tensor()),
        text_k(tk ? unit_stride(*tk) : Tensor()),
        text_v(tv ? unit_stride(*tv) : Tensor()),
        text_mask(tm ? tm->contiguous() : Tensor()),
        video_mask(vm ? vm->contiguous() : Tensor()) {}

  static Tensor unit_stride(const Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

  Problem problem(int64_t sparsity, bool group, double scale) const {
    TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
                "skiparse.attention: q, k, v must be (B, L, H, D) of one shape");
    TORCH_CHECK(sparsity >= 1, "skiparse.attention: sparsity must be >= 1, got ", sparsity);
    const int64_t T = text_q.defined() ? text_q.size(1) : 0;
    TORCH_CHECK(!text_mask.defined() || text_mask.scalar_type() == at::kBool, "text_mask must be bool");
    TORCH_CHECK(!video_mask.defined() || video_mask.scalar_type() == at::kBool, "video_mask must be bool");
    return Problem{q.size(0), q.size(1), q.size(2), q.size(3), T, sparsity, group, scale,
                   video_mask.defined() ? video_mask.data_ptr<bool>() : nullptr,
                   text_mask.defined() ? text_mask.data_ptr<bool>() : nullptr};
  }
};

// Statistics dtype: fp32, fp64 for fp64 inputs.
inline at::ScalarType stats_dtype(const Tensor& q) {
  return q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
