// Fused Skiparse attention forward on the CPU: one online-softmax (flash) pass per query tile of a
// sub-sequence over the sub-sequence's key tiles (its video lanes, then the text rows). Tiles are strided views
// of q, k, v where they live; no padded or permuted copy, no S x S mask.
#include "attention.h"
#include "kernels.h"

namespace skiparse::cpu {
namespace {

template <typename A>
struct FwdScratch {
  std::vector<A> q, k, v, s, acc, m, l;
  std::vector<int64_t> cols;
  explicit FwdScratch(int64_t D)
      : q(kQueryTile * D), k(kKeyTile * D), v(kKeyTile * D), s(kQueryTile * kKeyTile), acc(kQueryTile * D),
        m(kQueryTile), l(kQueryTile) {}
};

template <typename T>
struct Forward {
  using A = acc_t<T>;
  const Problem& P;
  Operand<T> q, k, v, tq, tk, tv, out, text_out;
  A *lse, *text_parts, *text_lse;  // (B, H, L), (B, k, T, H, D), (B, H, k, T)

  A* part(int64_t b, int64_t s, int64_t t, int64_t h) const {
    return text_parts + (((b * P.k + s) * P.T + t) * P.H + h) * P.D;
  }

  // One query tile `qt` of sub-sequence `sub` of (b, h).
  void tile(int64_t b, int64_t h, int64_t sub, const Tile& qt, const std::vector<Tile>& keys,
            FwdScratch<A>& w) const {
    const int64_t D = P.D, qn = qt.n;
    const A* Q = stage(qt.text ? tq : q, b, h, qt, D, w.q.data());
    std::fill(w.m.begin(), w.m.begin() + qn, -kInf<A>);
    std::fill(w.l.begin(), w.l.begin() + qn, A(0));
    std::fill(w.acc.begin(), w.acc.begin() + qn * D, A(0));
    A* S = w.s.data();
    for (const Tile& kt : keys) {
      const int64_t kn = kt.n;
      const A* K = stage(kt.text ? tk : k, b, h, kt, D, w.k.data());
      const A* V = stage(kt.text ? tv : v, b, h, kt, D, w.v.data());
      gemm<A>(false, true, qn, kn, D, A(P.scale), Q, D, K, D, A(0), S, kKeyTile);
      P.masked_columns(b, kt, w.cols);
      for (int64_t r = 0; r < qn; ++r) {
        A* s = S + r * kKeyTile;
        for (int64_t c : w.cols) s[c] = -kInf<A>;
        const A m_new = std::max(w.m[r], row_max(s, kn));
        if (m_new == -kInf<A>) {  // every key so far is masked: this tile adds nothing
          std::fill(s, s + kn, A(0));
          continue;
        }
        const A alpha = std::exp(w.m[r] - m_new);
        w.l[r] = w.l[r] * alpha + exp_sub_sum(s, kn, m_new);
        if (alpha != A(1)) scale_row(w.acc.data() + r * D, D, alpha);
        w.m[r] = m_new;
      }
      gemm<A>(false, false, qn, D, kn, A(1), S, kKeyTile, V, D, A(1), w.acc.data(), D);
    }
    // Normalise. A row with no unmasked key outputs 0 and gets lse = +inf, so the backward's P is 0.
    qt.for_each_row([&](int64_t r, int64_t row) {
      const A l = w.l[r];
      A* o = w.acc.data() + r * D;
      scale_row(o, D, l > 0 ? A(1) / l : A(0));
      const A row_lse = l > 0 ? w.m[r] + std::log(l) : kInf<A>;
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

  void run() const {
    const Schedule sched(P);
    parallel_items<FwdScratch<A>>(
        P, [&](int64_t s) { return sched.queries[s].size(); },
        [&](int64_t b, int64_t h, int64_t s, int64_t i, FwdScratch<A>& w) {
          tile(b, h, s, sched.queries[s][i], sched.keys[s], w);
        });
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
                      text_lse.data_ptr<A>()}
        .run();
  });
  return {out, text_out, lse, text_parts, text_lse};
}

}  // namespace skiparse::cpu
