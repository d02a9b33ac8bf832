// Fused Skiparse attention backward on the CPU (flash-attention recomputation): per sub-sequence, every query
// tile recomputes P = exp(scale * Q K^T - lse) tile by tile and accumulates dQ (per query tile) and dK, dV (per
// key tile, in fp32) with five GEMMs per tile pair. Text queries are the k copies of the forward, each with
// dO / k; text key and query gradients are summed over the copies.
// A task walks its sub-sequence's keys in groups of about kKeyGroup rows, and its query tiles inside each group:
// the group's key tiles are formed once (KeyPacks) and its dK, dV accumulate in contiguous fp32 buffers, one group
// per thread at a time, while dQ accumulates in fp32 across groups. (Sub-sequence-wide key copies and dK, dV per
// task had made the extra memory exceed the upstream path's at k = 1; accumulating fp32 dK, dV in place at the
// sub-sequence's row stride of k * H * D, kilobytes, hit one cache set.)
// bf16/fp16 on CPUs with the units (native_lowp): the five GEMMs run in the input dtype (brgemm, fp32
// accumulation) on the transposed problem, S^T = K Q^T, so that every operand is either a key tile formed once
// per group or a query tile packed once per group. Elsewhere the key tiles are staged in the compute type.
#include "attention.h"

namespace skiparse::cpu::CPU_CAPABILITY {
namespace {

template <typename T, typename O, typename A = acc_t<T>>
struct BwdScratch {
  TileBuf<A> q, dout, o, p, dp, di, lse;
  TileBuf<A> dk, dv;    // the current key group's dK, dV, [rows, D] per key tile in order
  TileBuf<A> dq_slots;  // the task's dQ per query tile across key groups: [D, kQueryTile] (native), [kQueryTile, D]
  TileBuf<O> keys;      // the forms of the current key group (KeyPacks)
  std::vector<int64_t> starts;  // first row in dk, dv of each key tile of the group
  std::vector<int64_t> cols;
  // Native bf16/fp16: the query tile's Q and dO in the input dtype and packed as Q^T, Q, dO^T, dO; P^T and dS^T
  // in the input dtype (leading dim even(kQueryTile)); dS^T packed.
  TileBuf<T> xn, qT, qR, dT, dR, pT, dsT, ds_p;
  BwdScratch(int64_t D, bool lowp)
      : q(kQueryTile * D), dout(kQueryTile * D), o(kQueryTile * D), p(kQueryTile * kKeyTile),
        dp(kQueryTile * kKeyTile), di(kQueryTile), lse(kQueryTile) {
    if (!lowp) return;
    const int64_t qp = even(kQueryTile), kp = even(kKeyTile);
    xn.resize(qp * D);
    for (auto* v : {&qT, &dT}) v->resize(packed_size(D, kQueryTile));
    for (auto* v : {&qR, &dR}) v->resize(packed_size(qp, D));
    for (auto* v : {&pT, &dsT}) v->resize(kp * qp);
    ds_p.resize(packed_size(kp, kQueryTile));
  }
};

// x: [even(n), D] in the input dtype with a zero row past n -> packed as B = x^T ([D, n]) and B = x.
template <typename T>
void pack_both(const T* x, int64_t n, int64_t D, T* cols, T* rows) {
  std::array<const T*, kQueryTile + 1> r;
  for (int64_t i = 0; i < even(n); ++i) r[i] = x + i * D;
  pack_rows(r.data(), n, D, true, cols);
  pack_rows(r.data(), even(n), D, false, rows);
}

// out[b, n, h] = sum_p parts[b, p, n, h] for parts laid out (B, P, N, H, D) in the compute type.
template <typename T, typename A>
void reduce_parts(const A* parts, int64_t P, const Operand<T>& out, int64_t B, int64_t N, int64_t H, int64_t D) {
  at::parallel_for(0, B * N * H, 64, [&](int64_t begin, int64_t end) {
    std::vector<A> sum(D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / (N * H), n = (i / H) % N, h = i % H;
      std::fill(sum.begin(), sum.end(), A(0));
      for (int64_t p = 0; p < P; ++p) {
        const A* src = parts + (((b * P + p) * N + n) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) sum[d] += src[d];
      }
      T* dst = out.row(b, n, h);
      for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(sum[d]);
    }
  });
}

// Operand view of slice `p` of a (B, P, N, H, D) compute-type buffer.
template <typename A>
Operand<A> slice(A* parts, int64_t p, int64_t P, int64_t N, int64_t H, int64_t D) {
  Operand<A> o;
  o.data = parts + p * N * H * D;
  o.sB = P * N * H * D;
  o.sN = H * D;
  o.sH = D;
  return o;
}

// Key rows per key group of the backward: 8 key tiles. Each group prepares the query tiles again (about 1/40 of
// the group's GEMM time) and holds 4096 x D of key forms and of fp32 dK, dV per thread.
constexpr int64_t kKeyGroup = 8 * kKeyTile;

// O: the key forms' element type, T for native bf16/fp16 GEMMs (K, V and K^T as brgemm operands), else the compute
// type (K and V rows staged for sgemm/dgemm).
template <typename T, typename O>
struct Backward {
  using A = acc_t<T>;
  static constexpr bool kNative = kReduced<O>;
  using Scratch = BwdScratch<T, O>;
  const Problem& P;
  const KeyPacks<T, O>& packs;  // native: K (form 0), V (form 1), K^T (form 2); else K, V
  int64_t C;  // query-tile chunks per sub-sequence (more work items when B * H * k is small)
  Operand<T> q, tq, out, dout, dtext_out, dq, dk, dv;
  const A *lse, *text_lse;
  A* text_parts;  // (B, k, T, H, D) per-copy text outputs of the forward
  A *dtq_parts, *dtk_parts, *dtv_parts;  // (B, k, T, H, D), (B, k*C, T, H, D) x 2
  A *dk_parts, *dv_parts;                // (B, C, L, H, D) when C > 1

  // Native bf16/fp16 body of query_tile, on the transposed problem (rows = keys, columns = queries), for key
  // tiles [j0, j1) whose forms are in w.keys. dO is staged in fp32 (scaled for text copies); adds dQ^T
  // [D, kQueryTile] into dqT.
  void query_tile_lowp(int64_t b, int64_t h, int64_t sub, const Tile& qt, const std::vector<Tile>& keys, size_t j0,
                       size_t j1, const A* dO, A* dqT, Scratch& w) const {
    using Vec = at::vec::Vectorized<float>;
    const int64_t D = P.D, qn = qt.n, qp = even(qn), ld = kQueryTile, ldt = even(kQueryTile);
    const float scale = static_cast<float>(P.scale);
    gather(qt.text ? tq : q, b, h, qt, D, w.xn.data(), false, qp);
    pack_both(w.xn.data(), qn, D, w.qT.data(), w.qR.data());
    at::vec::convert(dO, w.xn.data(), qn * D);
    std::fill(w.xn.begin() + qn * D, w.xn.begin() + qp * D, T(0));
    pack_both(w.xn.data(), qn, D, w.dT.data(), w.dR.data());
    std::vector<int64_t> special;  // columns (queries) whose lse is +inf (no key: P = 0) or NaN (P = NaN)
    for (int64_t r = 0; r < qn; ++r)
      if (!std::isfinite(w.lse[r])) special.push_back(r);
    float *St = w.p.data(), *dPt = w.dp.data();
    auto form = [&](size_t j, int64_t f) { return packs.get(w.keys.data(), sub, j, f, j0); };
    for (size_t j = j0; j < j1; ++j) {
      const Tile& kt = keys[j];
      const int64_t kn = kt.n, kp = even(kn);
      A *dk = w.dk.data() + w.starts[j - j0] * D, *dv = w.dv.data() + w.starts[j - j0] * D;
      gemm_packed<T>(kn, qn, D, form(j, 0), D, w.qT.data(), St, ld, false);  // S^T = K Q^T
      P.masked_columns(b, kt, w.cols);
      for (int64_t c = 0; c < kn; ++c) exp_scaled_minus(St + c * ld, qn, scale, w.lse.data());  // P^T
      for (int64_t c : w.cols) std::fill(St + c * ld, St + c * ld + qn, 0.f);
      for (int64_t r : special)  // after the key mask: a NaN query row is NaN at masked keys too, as in the reference
        for (int64_t c = 0; c < kn; ++c) St[c * ld + r] = w.lse[r] == kInf<A> ? 0.f : w.lse[r];
      for (int64_t c = 0; c < kn; ++c) {
        T* pt = w.pT.data() + c * ldt;
        at::vec::convert(St + c * ld, pt, qn);
        if (qp > qn) pt[qn] = T(0);
      }
      gemm_packed<T>(kn, D, qp, w.pT.data(), ldt, w.dR.data(), dv, D, true);  // dV += P^T dO
      gemm_packed<T>(kn, qn, D, form(j, 1), D, w.dT.data(), dPt, ld, false);  // dP^T = V dO^T
      for (int64_t c = 0; c < kn; ++c) {  // dS^T = scale P^T (dP^T - Di)
        float* dp = dPt + c * ld;
        at::vec::map3([scale](Vec p, Vec g, Vec di) { return p * (g - di) * Vec(scale); }, dp, St + c * ld, dp,
                      w.di.data(), qn);
        T* ds = w.dsT.data() + c * ldt;
        at::vec::convert(dp, ds, qn);
        if (qp > qn) ds[qn] = T(0);
      }
      if (kp > kn) std::fill(w.dsT.data() + kn * ldt, w.dsT.data() + kn * ldt + qp, T(0));
      gemm_packed<T>(kn, D, qp, w.dsT.data(), ldt, w.qR.data(), dk, D, true);  // dK += dS^T Q
      pack_b(kp, qn, w.dsT.data(), ldt, w.ds_p.data());
      gemm_packed<T>(D, qn, kp, form(j, 2), kp, w.ds_p.data(), dqT, ld, true);  // dQ^T
    }
  }

  // Query tile `qt` of sub-sequence `sub` against key tiles [j0, j1), whose forms are in w.keys: accumulates
  // their dK, dV into w.dk, w.dv and the tile's dQ into dqS (written out by write_dq after the last group).
  void query_tile(int64_t b, int64_t h, int64_t sub, const Tile& qt, const std::vector<Tile>& keys, size_t j0,
                  size_t j1, A* dqS, Scratch& w) const {
    const int64_t D = P.D, qn = qt.n;
    const A scale = A(P.scale);
    const A* Q = kNative ? nullptr : stage(qt.text ? tq : q, b, h, qt, D, w.q.data());
    const A* dO;
    const A* Out;
    if (qt.text) {  // copy `sub` of a text query received dtext_out / k
      dO = stage(dtext_out, b, h, qt, D, w.dout.data(), A(1) / A(P.k));
      Out = stage(slice(text_parts, sub, P.k, P.T, P.H, D), b, h, qt, D, w.o.data());
    } else {
      dO = stage(dout, b, h, qt, D, w.dout.data());
      Out = stage(out, b, h, qt, D, w.o.data());
    }
    qt.for_each_row([&](int64_t r, int64_t row) {
      w.di[r] = dot(dO + r * D, Out + r * D, D);
      w.lse[r] = qt.text ? text_lse[((b * P.H + h) * P.k + sub) * P.T + row] : lse[(b * P.H + h) * P.L + row];
    });
    if constexpr (kNative) {
      query_tile_lowp(b, h, sub, qt, keys, j0, j1, dO, dqS, w);
    } else {
      A* Pm = w.p.data();
      A* dP = w.dp.data();
      for (size_t j = j0; j < j1; ++j) {
        const Tile& kt = keys[j];
        const int64_t kn = kt.n;
        const A* K = packs.get(w.keys.data(), sub, j, 0, j0);
        const A* V = packs.get(w.keys.data(), sub, j, 1, j0);
        A *dk = w.dk.data() + w.starts[j - j0] * D, *dv = w.dv.data() + w.starts[j - j0] * D;
        gemm<A>(false, true, qn, kn, D, scale, Q, D, K, D, A(0), Pm, kKeyTile);
        P.masked_columns(b, kt, w.cols);
        for (int64_t r = 0; r < qn; ++r) {
          A* p = Pm + r * kKeyTile;
          if (w.lse[r] == kInf<A> || std::isnan(w.lse[r])) {  // no unmasked key: output 0, no gradient; NaN: NaN
            std::fill(p, p + kn, w.lse[r] == kInf<A> ? A(0) : w.lse[r]);
            continue;
          }
          exp_sub_sum(p, kn, w.lse[r]);
          for (int64_t c : w.cols) p[c] = A(0);
        }
        gemm<A>(true, false, kn, D, qn, A(1), Pm, kKeyTile, dO, D, A(1), dv, D);  // dV += P^T dO
        gemm<A>(false, true, qn, kn, D, A(1), dO, D, V, D, A(0), dP, kKeyTile);  // dP = dO V^T
        for (int64_t r = 0; r < qn; ++r) {                                          // dS = P (dP - Di)
          using Vec = at::vec::Vectorized<A>;
          const A di = w.di[r];
          at::vec::map2([di](Vec p, Vec g) { return p * (g - Vec(di)); }, dP + r * kKeyTile, Pm + r * kKeyTile,
                        dP + r * kKeyTile, kn);
        }
        gemm<A>(false, false, qn, D, kn, scale, dP, kKeyTile, K, D, A(1), dqS, D);  // dQ += s dS K
        gemm<A>(true, false, kn, D, qn, scale, dP, kKeyTile, Q, D, A(1), dk, D);    // dK += s dS^T Q
      }
    }
  }

  // A query tile's accumulated dQ (dQ^T [D, kQueryTile] when native, else rows [kQueryTile, D]) into its rows of
  // dq, or of its text copy's slice.
  void write_dq(int64_t b, int64_t h, int64_t sub, const Tile& qt, const A* dqS) const {
    const Operand<A> dq_text = slice(dtq_parts, sub, P.k, P.T, P.H, P.D);
    if constexpr (!kNative) {
      if (qt.text) return store(dq_text, b, h, qt, P.D, dqS);
      return store(dq, b, h, qt, P.D, dqS);
    }
    qt.for_each_row([&](int64_t r, int64_t row) {
      for (int64_t d = 0; d < P.D; ++d) {
        const A x = dqS[d * kQueryTile + r];
        if (qt.text) {
          dq_text.row(b, row, h)[d] = x;
        } else {
          dq.row(b, row, h)[d] = static_cast<T>(x);
        }
      }
    });
  }

  // Ends of the key groups of a sub-sequence's key tiles: runs of tiles of at least kKeyGroup rows, and the rest.
  static std::vector<size_t> key_groups(const std::vector<Tile>& keys) {
    std::vector<size_t> ends;
    int64_t rows = 0;
    for (size_t j = 0; j < keys.size(); ++j) {
      rows += keys[j].n;
      if (rows >= kKeyGroup) {
        ends.push_back(j + 1);
        rows = 0;
      }
    }
    if (ends.empty() || ends.back() != keys.size()) ends.push_back(keys.size());
    return ends;
  }

  // Work item (b, h, sub, chunk c): query tiles c, c + C, ... of the sub-sequence against each key group in
  // turn, then the group's key gradients (into dk, dv, or this chunk's parts when C > 1), then the tiles' dQ.
  void task(int64_t b, int64_t h, int64_t sub, int64_t c, const std::vector<Tile>& queries,
            const std::vector<Tile>& keys, Scratch& w) const {
    const int64_t D = P.D, part = sub * C + c;
    const int64_t mine = std::max<int64_t>(0, (static_cast<int64_t>(queries.size()) - c + C - 1) / C);
    w.dq_slots.assign(mine * D * kQueryTile, A(0));
    size_t j0 = 0;
    for (const size_t j1 : key_groups(keys)) {
      w.keys.resize(std::max<size_t>(w.keys.size(), packs.span(sub, j0, j1)));
      packs.pack_tiles((b * P.H + h) * P.k + sub, j0, j1, w.keys.data());
      w.starts.clear();
      int64_t rows = 0;
      for (size_t j = j0; j < j1; ++j) {
        w.starts.push_back(rows);
        rows += keys[j].n;
      }
      w.dk.assign(rows * D, A(0));
      w.dv.assign(rows * D, A(0));
      for (int64_t i = 0; i < mine; ++i)
        query_tile(b, h, sub, queries[c + i * C], keys, j0, j1, w.dq_slots.data() + i * D * kQueryTile, w);
      for (size_t j = j0; j < j1; ++j) {
        const Tile& kt = keys[j];
        const A *gk = w.dk.data() + w.starts[j - j0] * D, *gv = w.dv.data() + w.starts[j - j0] * D;
        if (kt.text) {
          store(slice(dtk_parts, part, P.k * C, P.T, P.H, D), b, h, kt, D, gk);
          store(slice(dtv_parts, part, P.k * C, P.T, P.H, D), b, h, kt, D, gv);
        } else if (C == 1) {
          store(dk, b, h, kt, D, gk);
          store(dv, b, h, kt, D, gv);
        } else {
          store(slice(dk_parts, c, C, P.L, P.H, D), b, h, kt, D, gk);
          store(slice(dv_parts, c, C, P.L, P.H, D), b, h, kt, D, gv);
        }
      }
      j0 = j1;
    }
    for (int64_t i = 0; i < mine; ++i) write_dq(b, h, sub, queries[c + i * C], w.dq_slots.data() + i * D * kQueryTile);
  }

  void run(const Schedule& sched) const {
    parallel_items<Scratch>(
        P, [&](int64_t) { return C; },
        [&](int64_t b, int64_t h, int64_t s, int64_t c, Scratch& w) {
          task(b, h, s, c, sched.queries[s], sched.keys[s], w);
        },
        kNative);
    if (C > 1) {
      reduce_parts(dk_parts, C, dk, P.B, P.L, P.H, P.D);
      reduce_parts(dv_parts, C, dv, P.B, P.L, P.H, P.D);
    }
    if (P.T > 0) {
      reduce_parts(dtq_parts, P.k, Operand<T>(dtq_out), P.B, P.T, P.H, P.D);
      reduce_parts(dtk_parts, P.k * C, Operand<T>(dtk_out), P.B, P.T, P.H, P.D);
      reduce_parts(dtv_parts, P.k * C, Operand<T>(dtv_out), P.B, P.T, P.H, P.D);
    }
  }
  Tensor dtq_out, dtk_out, dtv_out;
};

// Chunks per sub-sequence: 1 when B * H * k work items already load every thread evenly, else enough to.
int64_t query_chunks(const Problem& P, int64_t query_tiles) {
  const int64_t items = P.B * P.H * P.k, threads = at::get_num_threads();
  if (items % threads == 0 || items >= 4 * threads) return 1;
  return std::max<int64_t>(1, std::min(query_tiles, (4 * threads + items - 1) / items));
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> attention_backward(
    const Tensor& dout, const Tensor& dtext_out, const Tensor& q, const Tensor& k, const Tensor& v,
    const OptTensor& text_q, const OptTensor& text_k, const OptTensor& text_v, const OptTensor& text_mask,
    const OptTensor& video_mask, int64_t sparsity, bool group, double scale, const Tensor& out, const Tensor& lse,
    const Tensor& text_parts, const Tensor& text_lse) {
  const AttentionArgs a(q, k, v, text_q, text_k, text_v, text_mask, video_mask);
  const Problem P = a.problem(sparsity, group, scale);
  const auto stats = q.options().dtype(stats_dtype(q));
  const Schedule sched(P);
  const int64_t C = query_chunks(P, static_cast<int64_t>(sched.queries[0].size()));
  Tensor dq = at::empty(q.sizes(), q.options()), dk = at::empty_like(dq), dv = at::empty_like(dq);
  Tensor dtq = at::empty({P.B, P.T, P.H, P.D}, q.options()), dtk = at::empty_like(dtq), dtv = at::empty_like(dtq);
  Tensor dtq_parts = at::empty({P.B, P.k, P.T, P.H, P.D}, stats);
  Tensor dtk_parts = at::empty({P.B, P.k * C, P.T, P.H, P.D}, stats), dtv_parts = at::empty_like(dtk_parts);
  Tensor dk_parts, dv_parts;
  if (C > 1) {
    dk_parts = at::zeros({P.B, C, P.L, P.H, P.D}, stats);
    dv_parts = at::zeros_like(dk_parts);
  }
  const Tensor dout_ = AttentionArgs::unit_stride(dout), dtext_ = AttentionArgs::unit_stride(dtext_out);
  const Tensor out_ = AttentionArgs::unit_stride(out);
  const Tensor lse_ = lse.contiguous(), text_lse_ = text_lse.contiguous(), parts_ = text_parts.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "skiparse_attention_backward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    using Op = Operand<T>;
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<A>() : nullptr; };
    const std::array<std::array<Op, 2>, 2> ops{{{Op(a.k), Op(a.v)}, {Op(a.text_k), Op(a.text_v)}}};
    auto run = [&](auto o, std::vector<Form> forms) {
      using O = decltype(o);
      const KeyPacks<T, O> packs(P, sched, std::move(forms), ops);  // the layout; each task forms its key groups
      Backward<T, O>{P,        packs,          C,           Op(a.q),         Op(a.text_q),    Op(out_),
                     Op(dout_), Op(dtext_),    Op(dq),      Op(dk),          Op(dv),          ptr(lse_),
                     ptr(text_lse_), ptr(parts_), ptr(dtq_parts), ptr(dtk_parts), ptr(dtv_parts), ptr(dk_parts),
                     ptr(dv_parts), dtq,        dtk,         dtv}
          .run(sched);
    };
    if (native_lowp<T>() && P.D % 2 == 0) {
      run(T(), {{false, false, false}, {true, false, false}, {false, true, false}});  // K, V, K^T for brgemm
    } else {
      run(A(), {{false, false, false}, {true, false, false}});  // K and V rows in the compute type
    }
  });
  return {dq, dk, dv, dtq, dtk, dtv};
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
