// Fused Skiparse attention forward on the CPU: one online-softmax (flash) pass per query tile of a
// sub-sequence over the sub-sequence's key tiles (its video lanes, then the text rows). Tiles are strided views
// of q, k, v where they live, gathered tile by tile; no padded or permuted copy of the tensors, no S x S mask. A sub-sequence's key tiles are formed
// once (KeyPacks), into a buffer reused from one batch of sub-sequences to the next, and then its query tiles run
// in parallel: the keys are read warm, and a fresh 40 MB buffer of every sub-sequence's keys no longer costs a page
// fault per 4 KiB on each call. bf16/fp16 on CPUs with the units (native_lowp): Q K^T and P V in the input dtype
// (brgemm, fp32 accumulation), P rounded to the input dtype for the P V product as FlashAttention does; softmax
// statistics fp32. Elsewhere the key tiles are staged in the compute type for sgemm/dgemm.
#include "attention.h"

namespace skiparse::cpu::CPU_CAPABILITY {
namespace {

template <typename T, typename A = acc_t<T>>
struct FwdScratch {
  TileBuf<A> q, s, acc, m, l;
  TileBuf<T> qn, p;  // native bf16/fp16: the query tile and P (leading dim even(kKeyTile))
  std::vector<char> nan;  // rows that met a NaN score: their output is NaN, as in the reference
  std::vector<int64_t> cols;
  FwdScratch(int64_t D, bool lowp)
      : q(lowp ? 0 : kQueryTile * D), s(kQueryTile * kKeyTile), acc(kQueryTile * D), m(kQueryTile), l(kQueryTile),
        qn(lowp ? kQueryTile * D : 0), p(lowp ? kQueryTile * even(kKeyTile) : 0), nan(kQueryTile) {}
};

// O: the key packs' element type, T for native bf16/fp16 GEMMs (K^T and V packed for brgemm), else the compute
// type (K and V rows staged for sgemm/dgemm).
template <typename T, typename O>
struct Forward {
  using A = acc_t<T>;
  static constexpr bool kNative = kReduced<O>;
  const Problem& P;
  const Schedule& S;
  const KeyPacks<T, O>& packs;  // form 0: K^T or K, form 1: V
  Operand<T> q, tq, out, text_out;
  A *lse, *text_parts, *text_lse;  // (B, H, L), (B, k, T, H, D), (B, H, k, T)

  A* part(int64_t b, int64_t s, int64_t t, int64_t h) const {
    return text_parts + (((b * P.k + s) * P.T + t) * P.H + h) * P.D;
  }

  // The online-softmax update of row r for one key tile, given the tile's row max `mx` (of the scaled scores):
  // exp_sum(m) turns the row into its exps against the new running max m and returns their sum. False (and the
  // statistics untouched) when the tile adds nothing: every key so far masked, or the row met a NaN.
  template <typename ExpSum>
  bool online_update(int64_t r, A mx, FwdScratch<T>& w, ExpSum exp_sum) const {
    if (std::isnan(mx)) w.nan[r] = 1;
    const A m_new = std::max(w.m[r], mx);
    if (m_new == -kInf<A> || w.nan[r]) return false;
    const A alpha = m_new == w.m[r] ? A(1) : std::exp(w.m[r] - m_new);  // the max rarely moves late in a row
    w.l[r] = w.l[r] * alpha + exp_sum(m_new);
    if (alpha != A(1)) scale_row(w.acc.data() + r * P.D, P.D, alpha);
    w.m[r] = m_new;
    return true;
  }

  // Native bf16/fp16: row r of a tile from its raw (unscaled) scores s[0, kn), writing P in T for the P V brgemm
  // (a zero column pads an odd kn). Masked columns (w.cols) become -inf here.
  void softmax_row_to_p(A* s, int64_t kn, int64_t r, FwdScratch<T>& w) const {
    T* p = w.p.data() + r * even(kKeyTile);
    if (kn % 2) p[kn] = T(0);
    float scale = static_cast<float>(P.scale);
    if (!(scale > 0)) {  // the fused pass keeps a masked key at -inf only for scale > 0: scale first (rare)
      scale_row(s, kn, scale);
      scale = 1.f;
    }
    for (int64_t c : w.cols) s[c] = -kInf<A>;
    if (!online_update(r, scale * row_max(s, kn), w,
                       [&](float m) { return exp_scaled_sum_to_best(s, kn, scale, m, p); })) {
      std::fill(p, p + kn, T(0));
    }
  }

  // One query tile `qt` of sub-sequence `sub` of (b, h), whose key packs are at `keys`.
  void tile(int64_t b, int64_t h, int64_t sub, const Tile& qt, const O* keys, FwdScratch<T>& w) const {
    const int64_t D = P.D, qn = qt.n, ldp = even(kKeyTile);
    const A* Q = nullptr;
    if constexpr (kNative) {
      // Gathered even when the tile is one strided view: AMX tile loads at a stride of k * H * D elements
      // (kilobytes) hit one cache set, and reading q in place measured 10% slower at k = 4 and 8.
      gather(qt.text ? tq : q, b, h, qt, D, w.qn.data(), false, qn);
    } else {
      Q = stage(qt.text ? tq : q, b, h, qt, D, w.q.data());
    }
    std::fill(w.m.begin(), w.m.begin() + qn, -kInf<A>);
    std::fill(w.l.begin(), w.l.begin() + qn, A(0));
    std::fill(w.acc.begin(), w.acc.begin() + qn * D, A(0));
    std::fill(w.nan.begin(), w.nan.begin() + qn, 0);
    A* Sc = w.s.data();
    const std::vector<Tile>& key_tiles = S.keys[sub];
    for (size_t j = 0; j < key_tiles.size(); ++j) {
      const Tile& kt = key_tiles[j];
      const int64_t kn = kt.n;
      const O* K = packs.get(keys, sub, j, 0);
      const O* V = packs.get(keys, sub, j, 1);
      if constexpr (kNative) {
        gemm_packed<T>(qn, kn, D, w.qn.data(), D, K, Sc, kKeyTile, false);
      } else {
        gemm<A>(false, true, qn, kn, D, A(P.scale), Q, D, K, D, A(0), Sc, kKeyTile);
      }
      P.masked_columns(b, kt, w.cols);
      for (int64_t r = 0; r < qn; ++r) {
        A* s = Sc + r * kKeyTile;
        if constexpr (kNative) {  // raw scores: the scale is applied inside the fused exp pass
          softmax_row_to_p(s, kn, r, w);
        } else {
          for (int64_t c : w.cols) s[c] = -kInf<A>;
          if (!online_update(r, row_max(s, kn), w, [&](A m) { return exp_sub_sum(s, kn, m); })) {
            std::fill(s, s + kn, A(0));
          }
        }
      }
      if constexpr (kNative) {
        gemm_packed<T>(qn, D, even(kn), w.p.data(), ldp, V, w.acc.data(), D, true);
      } else {
        gemm<A>(false, false, qn, D, kn, A(1), Sc, kKeyTile, V, D, A(1), w.acc.data(), D);
      }
    }
    // Normalise. A row with no unmasked key outputs 0 and gets lse = +inf, so the backward's P is 0; a row that
    // met a NaN score outputs NaN with lse = NaN.
    qt.for_each_row([&](int64_t r, int64_t row) {
      const A l = w.l[r];
      A* o = w.acc.data() + r * D;
      A row_lse = l > 0 ? w.m[r] + std::log(l) : kInf<A>;
      if (w.nan[r]) {
        row_lse = std::numeric_limits<A>::quiet_NaN();
        std::fill(o, o + D, row_lse);
      } else {
        scale_row(o, D, l > 0 ? A(1) / l : A(0));
      }
      if (qt.text) {
        text_lse[((b * P.H + h) * P.k + sub) * P.T + row] = row_lse;
        std::copy(o, o + D, part(b, sub, row, h));
      } else {
        lse[(b * P.H + h) * P.L + row] = row_lse;
      }
    });
    if (!qt.text) store(out, b, h, qt, D, w.acc.data());
  }

  // text_out = mean of the k per-sub-sequence copies.
  void text_mean(int64_t b, int64_t t, int64_t h, A* sum) const {
    std::fill(sum, sum + P.D, A(0));
    for (int64_t s = 0; s < P.k; ++s) {
      const A* p = part(b, s, t, h);
      for (int64_t d = 0; d < P.D; ++d) sum[d] += p[d];
    }
    T* dst = text_out.row(b, t, h);
    for (int64_t d = 0; d < P.D; ++d) dst[d] = static_cast<T>(sum[d] / A(P.k));
  }

  // Sub-sequences in batches of consecutive units (unit u = (b * H + h) * k + sub, as in KeyPacks), each batch
  // with at least kBatchTiles query tiles per thread so that small sub-sequences still load every thread: the
  // batch's keys are packed, then its query tiles run.
  void run() const {
    static constexpr int64_t kBatchTiles = 4;
    const int64_t units = P.B * P.H * P.k, threads = at::get_num_threads();
    std::vector<int64_t> ends;  // batch i is units [ends[i - 1], ends[i])
    int64_t largest = 0;
    for (int64_t u0 = 0; u0 < units;) {
      int64_t u1 = u0, tiles = 0, size = 0;
      while (u1 < units && (u1 == u0 || tiles < kBatchTiles * threads)) {
        tiles += static_cast<int64_t>(S.queries[u1 % P.k].size());
        size += packs.size(u1++);
      }
      largest = std::max(largest, size);
      ends.push_back(u0 = u1);
    }
    TileBuf<O> buf(largest);
    std::vector<std::unique_ptr<FwdScratch<T>>> scratch(threads);  // per thread, kept across batches
    std::vector<int64_t> offsets;
    std::vector<std::array<int64_t, 2>> work;  // (unit, query tile)
    for (size_t i = 0, u0 = 0; i < ends.size(); u0 = ends[i++]) {
      offsets.clear();
      work.clear();
      for (int64_t u = u0, off = 0; u < ends[i]; off += packs.size(u++)) {
        offsets.push_back(off);
        for (size_t t = 0; t < S.queries[u % P.k].size(); ++t) work.push_back({u, static_cast<int64_t>(t)});
      }
      packs.pack(u0, ends[i], offsets, buf.data());
      at::parallel_for(0, static_cast<int64_t>(work.size()), 1, [&](int64_t begin, int64_t end) {
        auto& w = scratch[at::get_thread_num()];
        if (!w) w = std::make_unique<FwdScratch<T>>(P.D, kNative);
        for (int64_t x = begin; x < end; ++x) {
          const int64_t u = work[x][0], s = u % P.k, bh = u / P.k;
          tile(bh / P.H, bh % P.H, s, S.queries[s][work[x][1]], buf.data() + offsets[u - u0], *w);
        }
        if (kNative) at::native::cpublas::brgemm_release();  // the thread's AMX tile state
      });
    }
    at::parallel_for(0, P.B * P.T * P.H, 64, [&](int64_t begin, int64_t end) {
      std::vector<A> sum(P.D);
      for (int64_t i = begin; i < end; ++i) text_mean(i / (P.T * P.H), (i / P.H) % P.T, i % P.H, sum.data());
    });
  }
};

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> attention_forward(
    const Tensor& q, const Tensor& k, const Tensor& v, const OptTensor& text_q, const OptTensor& text_k,
    const OptTensor& text_v, const OptTensor& text_mask, const OptTensor& video_mask, int64_t sparsity, bool group,
    double scale) {
  const AttentionArgs a(q, k, v, text_q, text_k, text_v, text_mask, video_mask);
  const Problem P = a.problem(sparsity, group, scale);
  const auto stats = q.options().dtype(stats_dtype(q));
  Tensor out = at::empty(q.sizes(), q.options());
  Tensor text_out = at::empty({P.B, P.T, P.H, P.D}, q.options());
  Tensor lse = at::empty({P.B, P.H, P.L}, stats);
  Tensor text_parts = at::empty({P.B, P.k, P.T, P.H, P.D}, stats);
  Tensor text_lse = at::empty({P.B, P.H, P.k, P.T}, stats);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "skiparse_attention_forward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    using Op = Operand<T>;
    const Schedule sched(P, /*across_lanes=*/true);
    const std::array<std::array<Op, 2>, 2> ops{{{Op(a.k), Op(a.v)}, {Op(a.text_k), Op(a.text_v)}}};
    auto run = [&](auto o, std::vector<Form> forms) {
      using O = decltype(o);
      const KeyPacks<T, O> packs(P, sched, std::move(forms), ops);
      Forward<T, O>{P, sched, packs, Op(a.q), Op(a.text_q), Op(out), Op(text_out), lse.data_ptr<A>(),
                    text_parts.data_ptr<A>(), text_lse.data_ptr<A>()}
          .run();
    };
    if (native_lowp<T>() && P.D % 2 == 0) {
      run(T(), {{false, true, true}, {true, false, true}});  // K^T and V packed for brgemm
    } else {
      run(A(), {{false, false, false}, {true, false, false}});  // K and V rows in the compute type
    }
  });
  return {out, text_out, lse, text_parts, text_lse};
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
