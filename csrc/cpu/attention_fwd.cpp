// Fused Skiparse attention forward on the CPU: one online-softmax (flash) pass per query tile of a
// sub-sequence over the sub-sequence's key tiles (its video lanes, then the text rows). Tiles are strided views
// of q, k, v where they live; no padded or permuted copy, no S x S mask. bf16/fp16 on CPUs with the units
// (native_lowp): Q K^T and P V in the input dtype (brgemm, fp32 accumulation, keys packed once per
// sub-sequence), P rounded to the input dtype for the P V product as FlashAttention does; softmax statistics fp32.
#include "attention.h"

namespace skiparse::cpu::CPU_CAPABILITY {
namespace {

template <typename T, typename A = acc_t<T>>
struct FwdScratch {
  TileBuf<A> q, k, v, s, acc, m, l;
  TileBuf<T> qn, p;  // native bf16/fp16: the query tile and P (leading dim even(kKeyTile))
  std::vector<char> nan;  // rows that met a NaN score: their output is NaN, as in the reference
  std::vector<int64_t> cols;
  FwdScratch(int64_t D, bool lowp)
      : q(lowp ? 0 : kQueryTile * D), k(lowp ? 0 : kKeyTile * D), v(lowp ? 0 : kKeyTile * D),
        s(kQueryTile * kKeyTile), acc(kQueryTile * D), m(kQueryTile), l(kQueryTile),
        qn(lowp ? kQueryTile * D : 0), p(lowp ? kQueryTile * even(kKeyTile) : 0), nan(kQueryTile) {}
};

template <typename T>
struct Forward {
  using A = acc_t<T>;
  const Problem& P;
  Operand<T> q, k, v, tq, tk, tv, out, text_out;
  A *lse, *text_parts, *text_lse;  // (B, H, L), (B, k, T, H, D), (B, H, k, T)
  const KeyPacks<T>* packs;         // native bf16/fp16: every key tile as K^T (form 0) and V (form 1); else null

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

  // One query tile `qt` of sub-sequence `sub` of (b, h).
  void tile(int64_t b, int64_t h, int64_t sub, const Tile& qt, const std::vector<Tile>& keys,
            FwdScratch<T>& w) const {
    const int64_t D = P.D, qn = qt.n, ldp = even(kKeyTile);
    const A* Q = nullptr;
    if (packs) {
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
    A* S = w.s.data();
    for (size_t j = 0; j < keys.size(); ++j) {
      const Tile& kt = keys[j];
      const int64_t kn = kt.n;
      const A* V = nullptr;
      if constexpr (kReduced<T>) {
        if (packs) gemm_packed<T>(qn, kn, D, w.qn.data(), D, packs->get(b, h, sub, j, 0), S, kKeyTile, false);
      }
      if (!packs) {
        const A* K = stage(kt.text ? tk : k, b, h, kt, D, w.k.data());
        V = stage(kt.text ? tv : v, b, h, kt, D, w.v.data());
        gemm<A>(false, true, qn, kn, D, A(P.scale), Q, D, K, D, A(0), S, kKeyTile);
      }
      P.masked_columns(b, kt, w.cols);
      for (int64_t r = 0; r < qn; ++r) {
        A* s = S + r * kKeyTile;
        if constexpr (kReduced<T>) {
          if (packs) {  // raw scores: the scale is applied inside the fused exp pass
            softmax_row_to_p(s, kn, r, w);
            continue;
          }
        }
        for (int64_t c : w.cols) s[c] = -kInf<A>;
        if (!online_update(r, row_max(s, kn), w, [&](A m) { return exp_sub_sum(s, kn, m); })) {
          std::fill(s, s + kn, A(0));
        }
      }
      if constexpr (kReduced<T>) {
        if (packs) gemm_packed<T>(qn, D, even(kn), w.p.data(), ldp, packs->get(b, h, sub, j, 1), w.acc.data(), D, true);
      }
      if (!packs) gemm<A>(false, false, qn, D, kn, A(1), S, kKeyTile, V, D, A(1), w.acc.data(), D);
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

  void run(const Schedule& sched) const {
    parallel_items<FwdScratch<T>>(
        P, [&](int64_t s) { return sched.queries[s].size(); },
        [&](int64_t b, int64_t h, int64_t s, int64_t i, FwdScratch<T>& w) {
          tile(b, h, s, sched.queries[s][i], sched.keys[s], w);
        },
        packs != nullptr);
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
    using A = acc_t<scalar_t>;
    using Op = Operand<scalar_t>;
    const Schedule sched(P, /*across_lanes=*/true);
    std::optional<KeyPacks<scalar_t>> packs;
    if (native_lowp<scalar_t>() && P.D % 2 == 0) {
      const Op ops[2][2] = {{Op(a.k), Op(a.v)}, {Op(a.text_k), Op(a.text_v)}};
      packs.emplace(P, sched, std::vector<Form>{{false, true, true}, {true, false, true}},
                    [&](bool text, bool value) { return ops[text][value]; });
    }
    Forward<scalar_t>{P,
                      Operand<scalar_t>(a.q),
                      Operand<scalar_t>(a.k),
                      Operand<scalar_t>(a.v),
                      Operand<scalar_t>(a.text_q),
                      Operand<scalar_t>(a.text_k),
                      Operand<scalar_t>(a.text_v),
                      Operand<scalar_t>(out),
                      Operand<scalar_t>(text_out),
                      lse.data_ptr<A>(),
                      text_parts.data_ptr<A>(),
                      text_lse.data_ptr<A>(),
                      packs ? &*packs : nullptr}
        .run(sched);
  });
  return {out, text_out, lse, text_parts, text_lse};
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
