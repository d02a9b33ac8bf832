// Fused Skiparse attention backward on the CPU (flash-attention recomputation): per sub-sequence, every query
// tile recomputes P = exp(scale * Q K^T - lse) tile by tile and accumulates dQ (per query tile) and dK, dV (per
// key tile, in fp32) with five GEMMs per tile pair. Text queries are the k copies of the forward, each with
// dO / k; text key and query gradients are summed over the copies.
// bf16/fp16 on CPUs with the units (native_lowp): the five GEMMs run in the input dtype (brgemm, fp32
// accumulation) on the transposed problem, S^T = K Q^T, so that every operand is either a key tile prepared once
// or a query tile packed once per key group. A task walks its sub-sequence's keys in groups of about kKeyGroup
// rows, the query tiles inside each group: the keys' forms and their fp32 dK, dV then exist for one group per
// thread at a time (dQ^T accumulates in fp32 across groups), not for the whole sub-sequence: at k = 1 the two
// threads' sub-sequence-wide copies had made the backward's extra memory exceed the upstream path's.
#include "attention.h"

namespace skiparse::cpu::CPU_CAPABILITY {
namespace {

// Where a key tile's dK, dV accumulate (leading dim ld): in place in dk/dv, or in the task's fp32 buffers.
template <typename A>
struct KeyGrad {
  A *dk, *dv;
  int64_t ld;
  bool in_place;
};

template <typename T, typename A = acc_t<T>>
struct BwdScratch {
  TileBuf<A> q, dout, o, k, v, p, dp, dq, di, lse, dk, dv;
  std::vector<KeyGrad<A>> key_grads;  // one per key tile of the current key group
  std::vector<int64_t> cols;
  // Native bf16/fp16: the query tile's Q and dO in the input dtype and packed as Q^T, Q, dO^T, dO; P^T and dS^T
  // in the input dtype (leading dim even(kQueryTile)); dS^T packed.
  TileBuf<T> xn, qT, qR, dT, dR, pT, dsT, ds_p, keys;  // keys: the forms of the current key group
  TileBuf<A> dq_slots;  // the task's dQ^T per query tile, [D, kQueryTile] each, across key groups
  BwdScratch(int64_t D, bool lowp)
      : q(kQueryTile * D), dout(kQueryTile * D), o(kQueryTile * D), k(lowp ? 0 : kKeyTile * D),
        v(lowp ? 0 : kKeyTile * D), p(kQueryTile * kKeyTile), dp(kQueryTile * kKeyTile), dq(kQueryTile * D),
        di(kQueryTile), lse(kQueryTile) {
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

// Key rows per key group of the native bf16/fp16 backward: 8 key tiles. Each group re-packs the query tiles
// (about 1/40 of the group's GEMM time) and holds 4096 x D of key forms and fp32 dK, dV per thread.
constexpr int64_t kKeyGroup = 8 * kKeyTile;

template <typename T>
struct Backward {
  using A = acc_t<T>;
  const Problem& P;
  int64_t C;  // query-tile chunks per sub-sequence (more work items when B * H * k is small)
  Operand<T> q, k, v, tq, tk, tv, out, dout, dtext_out, dq, dk, dv;
  const A *lse, *text_lse;
  A* text_parts;  // (B, k, T, H, D) per-copy text outputs of the forward
  A *dtq_parts, *dtk_parts, *dtv_parts;  // (B, k, T, H, D), (B, k*C, T, H, D) x 2
  A *dk_parts, *dv_parts;                // (B, C, L, H, D) when C > 1

  const KeyPacks<T>* packs;  // native bf16/fp16: key tiles as K (form 0), V (form 1), K^T (form 2); else null

  // Native bf16/fp16 body of query_tile, on the transposed problem (rows = keys, columns = queries), for key
  // tiles [j0, j1) whose forms are in w.keys. dO is staged in fp32 (scaled for text copies); adds dQ^T
  // [D, kQueryTile] into dqT.
  void query_tile_lowp(int64_t b, int64_t h, int64_t sub, const Tile& qt, const std::vector<Tile>& keys, size_t j0,
                       size_t j1, const A* dO, A* dqT, BwdScratch<T>& w) const {
    if constexpr (kReduced<T>) {
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
      auto form = [&](size_t j, int64_t f) { return packs->get(w.keys.data(), sub, j, f, j0); };
      for (size_t j = j0; j < j1; ++j) {
        const Tile& kt = keys[j];
        const int64_t kn = kt.n, kp = even(kn);
        const KeyGrad<A>& g = w.key_grads[j - j0];
        gemm_packed<T>(kn, qn, D, form(j, 0), D, w.qT.data(), St, ld, false);  // S^T = K Q^T
        P.masked_columns(b, kt, w.cols);
        for (int64_t c = 0; c < kn; ++c) {  // P^T = exp(scale S^T - lse)
          float* s = St + c * ld;
          int64_t r = 0;
          for (; r + Vec::size() <= qn; r += Vec::size())
            (Vec::loadu(s + r) * Vec(scale) - Vec::loadu(w.lse.data() + r)).exp_u20().store(s + r);
          for (; r < qn; ++r) s[r] = std::exp(s[r] * scale - w.lse[r]);
        }
        for (int64_t c : w.cols) std::fill(St + c * ld, St + c * ld + qn, 0.f);
        for (int64_t r : special)  // after the key mask: a NaN query row is NaN at masked keys too, as in the reference
          for (int64_t c = 0; c < kn; ++c) St[c * ld + r] = w.lse[r] == kInf<A> ? 0.f : w.lse[r];
        for (int64_t c = 0; c < kn; ++c) {
          T* pt = w.pT.data() + c * ldt;
          at::vec::convert(St + c * ld, pt, qn);
          if (qp > qn) pt[qn] = T(0);
        }
        gemm_packed<T>(kn, D, qp, w.pT.data(), ldt, w.dR.data(), g.dv, g.ld, true);  // dV += P^T dO
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
        gemm_packed<T>(kn, D, qp, w.dsT.data(), ldt, w.qR.data(), g.dk, g.ld, true);  // dK += dS^T Q
        pack_b(kp, qn, w.dsT.data(), ldt, w.ds_p.data());
        gemm_packed<T>(D, qn, kp, form(j, 2), kp, w.ds_p.data(), dqT, ld, true);  // dQ^T
      }
    }
  }

  // Query tile `qt` of sub-sequence `sub` against key tiles [j0, j1): accumulates into w.key_grads. Native
  // bf16/fp16 adds its dQ^T into dqT (written out by write_dq after the last key group); otherwise the key
  // tiles are all of the sub-sequence's and its dQ is written here.
  void query_tile(int64_t b, int64_t h, int64_t sub, const Tile& qt, const std::vector<Tile>& keys, size_t j0,
                  size_t j1, A* dqT, BwdScratch<T>& w) const {
    const int64_t D = P.D, qn = qt.n;
    const A scale = A(P.scale);
    const A* Q = packs ? nullptr : stage(qt.text ? tq : q, b, h, qt, D, w.q.data());
    const A* dO;
    const A* O;
    if (qt.text) {  // copy `sub` of a text query received dtext_out / k
      dO = stage(dtext_out, b, h, qt, D, w.dout.data(), A(1) / A(P.k));
      O = stage(slice(text_parts, sub, P.k, P.T, P.H, D), b, h, qt, D, w.o.data());
    } else {
      dO = stage(dout, b, h, qt, D, w.dout.data());
      O = stage(out, b, h, qt, D, w.o.data());
    }
    qt.for_each_row([&](int64_t r, int64_t row) {
      w.di[r] = dot(dO + r * D, O + r * D, D);
      w.lse[r] = qt.text ? text_lse[((b * P.H + h) * P.k + sub) * P.T + row] : lse[(b * P.H + h) * P.L + row];
    });
    if (packs) return query_tile_lowp(b, h, sub, qt, keys, j0, j1, dO, dqT, w);
    std::fill(w.dq.begin(), w.dq.begin() + qn * D, A(0));
    A* Pm = w.p.data();
    A* dP = w.dp.data();
    for (size_t j = j0; j < j1; ++j) {
      const Tile& kt = keys[j];
      const int64_t kn = kt.n;
      const A* K = stage(kt.text ? tk : k, b, h, kt, D, w.k.data());
      const A* V = stage(kt.text ? tv : v, b, h, kt, D, w.v.data());
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
      const KeyGrad<A>& g = w.key_grads[j - j0];
      gemm<A>(true, false, kn, D, qn, A(1), Pm, kKeyTile, dO, D, A(1), g.dv, g.ld);  // dV += P^T dO
      gemm<A>(false, true, qn, kn, D, A(1), dO, D, V, D, A(0), dP, kKeyTile);    // dP = dO V^T
      for (int64_t r = 0; r < qn; ++r) {                                                 // dS = P (dP - Di)
        using Vec = at::vec::Vectorized<A>;
        const A di = w.di[r];
        at::vec::map2([di](Vec p, Vec g) { return p * (g - Vec(di)); }, dP + r * kKeyTile, Pm + r * kKeyTile,
                      dP + r * kKeyTile, kn);
      }
      gemm<A>(false, false, qn, D, kn, scale, dP, kKeyTile, K, D, A(1), w.dq.data(), D);  // dQ += s dS K
      gemm<A>(true, false, kn, D, qn, scale, dP, kKeyTile, Q, D, A(1), g.dk, g.ld);    // dK += s dS^T Q
    }
    if (qt.text) {
      store(slice(dtq_parts, sub, P.k, P.T, P.H, D), b, h, qt, D, w.dq.data());
    } else {
      store(dq, b, h, qt, D, w.dq.data());
    }
  }

  // A query tile's dQ^T [D, kQueryTile] (native bf16/fp16) into its rows of dq, or of its text copy's slice.
  void write_dq(int64_t b, int64_t h, int64_t sub, const Tile& qt, const A* dqT) const {
    const Operand<A> dq_text = slice(dtq_parts, sub, P.k, P.T, P.H, P.D);
    qt.for_each_row([&](int64_t r, int64_t row) {
      for (int64_t d = 0; d < P.D; ++d) {
        const A x = dqT[d * kQueryTile + r];
        if (qt.text) {
          dq_text.row(b, row, h)[d] = x;
        } else {
          dq.row(b, row, h)[d] = static_cast<T>(x);
        }
      }
    });
  }

  // Ends of the key groups of a sub-sequence's key tiles: runs of tiles of about kKeyGroup rows for native
  // bf16/fp16, whose key forms are built per group; one group otherwise.
  std::vector<size_t> key_groups(const std::vector<Tile>& keys) const {
    std::vector<size_t> ends;
    int64_t rows = 0;
    for (size_t j = 0; j < keys.size(); ++j) {
      rows += keys[j].n;
      if (packs && rows >= kKeyGroup) {
        ends.push_back(j + 1);
        rows = 0;
      }
    }
    if (ends.empty() || ends.back() != keys.size()) ends.push_back(keys.size());
    return ends;
  }

  // Work item (b, h, sub, chunk c): query tiles c, c + C, ... of the sub-sequence against each key group in
  // turn, then the group's key gradients. A video key tile that is one strided run of an fp32/fp64 dk, dv
  // owned by this item alone (C == 1) accumulates in place, as PyTorch's flash backward does; other tiles use
  // the item's buffers.
  void task(int64_t b, int64_t h, int64_t sub, int64_t c, const std::vector<Tile>& queries,
            const std::vector<Tile>& keys, BwdScratch<T>& w) const {
    const int64_t D = P.D, part = sub * C + c, mine = (static_cast<int64_t>(queries.size()) - c + C - 1) / C;
    auto in_place = [&](const Tile& kt) { return std::is_same_v<T, A> && C == 1 && !kt.text && kt.runs.size() == 1; };
    if (packs) w.dq_slots.assign(std::max<int64_t>(mine, 0) * D * kQueryTile, A(0));
    size_t j0 = 0;
    for (const size_t j1 : key_groups(keys)) {
      if (packs) {
        w.keys.resize(std::max<size_t>(w.keys.size(), packs->span(sub, j0, j1)));
        packs->pack_tiles((b * P.H + h) * P.k + sub, j0, j1, w.keys.data());
      }
      int64_t rows = 0;
      for (size_t j = j0; j < j1; ++j) rows += in_place(keys[j]) ? 0 : keys[j].n;
      w.dk.assign(rows * D, A(0));
      w.dv.assign(rows * D, A(0));
      w.key_grads.clear();
      int64_t offset = 0;
      for (size_t j = j0; j < j1; ++j) {
        const Tile& kt = keys[j];
        if constexpr (std::is_same_v<T, A>) {
          if (in_place(kt)) {
            const Run& r = kt.runs[0];
            w.key_grads.push_back({dk.row(b, r.row0, h), dv.row(b, r.row0, h), r.stride * dk.sN, true});
            continue;
          }
        }
        w.key_grads.push_back({w.dk.data() + offset * D, w.dv.data() + offset * D, D, false});
        offset += kt.n;
      }
      for (int64_t i = 0; i < mine; ++i)
        query_tile(b, h, sub, queries[c + i * C], keys, j0, j1, w.dq_slots.data() + i * D * kQueryTile, w);
      for (size_t j = j0; j < j1; ++j) {
        const Tile& kt = keys[j];
        const KeyGrad<A>& g = w.key_grads[j - j0];
        if (g.in_place) continue;
        if (kt.text) {
          store(slice(dtk_parts, part, P.k * C, P.T, P.H, D), b, h, kt, D, g.dk);
          store(slice(dtv_parts, part, P.k * C, P.T, P.H, D), b, h, kt, D, g.dv);
        } else if (C == 1) {
          store(dk, b, h, kt, D, g.dk);
          store(dv, b, h, kt, D, g.dv);
        } else {
          store(slice(dk_parts, c, C, P.L, P.H, D), b, h, kt, D, g.dk);
          store(slice(dv_parts, c, C, P.L, P.H, D), b, h, kt, D, g.dv);
        }
      }
      j0 = j1;
    }
    if (packs)
      for (int64_t i = 0; i < mine; ++i) write_dq(b, h, sub, queries[c + i * C], w.dq_slots.data() + i * D * kQueryTile);
  }

  void run(const Schedule& sched) const {
    parallel_items<BwdScratch<T>>(
        P, [&](int64_t) { return C; },
        [&](int64_t b, int64_t h, int64_t s, int64_t c, BwdScratch<T>& w) {
          task(b, h, s, c, sched.queries[s], sched.keys[s], w);
        },
        packs != nullptr);
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
  // dk, dv start at zero: with C == 1 fp32/fp64 key tiles accumulate into them in place.
  Tensor dq = at::empty(q.sizes(), q.options()), dk = at::zeros(q.sizes(), q.options());
  Tensor dv = at::zeros(q.sizes(), q.options());
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
    using A = acc_t<scalar_t>;
    using Op = Operand<scalar_t>;
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<A>() : nullptr; };
    const std::array<std::array<Op, 2>, 2> ops{{{Op(a.k), Op(a.v)}, {Op(a.text_k), Op(a.text_v)}}};
    std::optional<KeyPacks<scalar_t>> packs;  // the layout of the key forms; built per key group by each task
    if (native_lowp<scalar_t>() && P.D % 2 == 0) {
      packs.emplace(P, sched, std::vector<Form>{{false, false, false}, {true, false, false}, {false, true, false}}, ops);
    }
    Backward<scalar_t>{P,         C,         Op(a.q),   Op(a.k),      Op(a.v),           Op(a.text_q),
                       Op(a.text_k), Op(a.text_v), Op(out_), Op(dout_), Op(dtext_),       Op(dq),
                       Op(dk),    Op(dv),    ptr(lse_), ptr(text_lse_), ptr(parts_),      ptr(dtq_parts),
                       ptr(dtk_parts), ptr(dtv_parts), ptr(dk_parts), ptr(dv_parts), packs ? &*packs : nullptr, dtq, dtk, dtv}
        .run(sched);
  });
  return {dq, dk, dv, dtq, dtk, dtv};
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
