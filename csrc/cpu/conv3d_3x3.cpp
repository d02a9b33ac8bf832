// conv3d_3x3: a stride-1 conv3d with a (kt, 3, 3) kernel, zero padding 1 in space and none in time, computed with
// Winograd F(4x4, 3x3) in the spatial plane (Lavin & Gray 2016). Every output frame is the sum over the kt
// temporal taps of a 2D Winograd conv of one input frame, so the transform domain holds 36 values per 4x4 output
// tile instead of 9 multiply-adds per output pixel: 4x fewer multiplies, all of them in large BLAS GEMMs
// (36 * kt per output frame and band, (tiles x C_in) @ (C_in x C_out)).
//
// Layout: activations are channels-last (B, T, H, W, C in memory), so a pixel's channels are one contiguous
// vector and the transforms run over channel vectors. Work items are (batch, band of tile rows, block of output
// frames); each thread keeps the transformed input frames of one item in a ring of kt slots, so every input
// frame is transformed once per item, and its scratch stays at kt * 36 * band_tiles * C_in elements. Very wide
// convs run in blocks of output channels, which bounds the transformed weight (kt * 36 * C_in * C_out elements).
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "gemm.h"
#include "huge_pages.h"
#include "kernels.h"

// One copy per ISA build (csrc/cpu/isa/*.cpp), like the attention kernels: the transforms are vectorised for it.
namespace skiparse::cpu::CPU_CAPABILITY {
namespace {

constexpr int kM = 4;          // output tile side
constexpr int kA = kM + 2;     // input tile side
constexpr int kP = kA * kA;    // transform-domain positions per tile
constexpr int kBandTiles = 128;  // tiles per band: the GEMM's M; ~64-256 keeps sgemm efficient
constexpr int64_t kChan = 64;  // channels per transform pass: the d/tmp scratch stays in L1
constexpr int64_t kWeightBudget = int64_t(128) << 20;  // bytes of transformed weight per block of output channels

// Interpolation points 0, 1, -1, 2, -2 and infinity.
constexpr double kBT[kA][kA] = {
    {4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
};
constexpr double kG[kA][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};
constexpr double kAT[kM][kA] = {
    {1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0},
    {0, 1, 1, 4, 4, 0},
    {0, 1, -1, 8, -8, 1},
};

// out[r][c] += coef[r][i] * in[i][c] for c < n, skipping zero coefficients (most of BT and AT).
template <typename S, int R, int I>
inline void left_multiply(const double (&coef)[R][I], const S* in, int64_t in_stride, S* out, int64_t out_stride,
                          int64_t n) {
  for (int r = 0; r < R; ++r) {
    S* o = out + r * out_stride;
    std::fill(o, o + n, S(0));
    for (int i = 0; i < I; ++i) {
      if (coef[r][i] == 0) continue;
      const S w = static_cast<S>(coef[r][i]);
      const S* x = in + i * in_stride;
      for (int64_t c = 0; c < n; ++c) o[c] += w * x[c];
    }
  }
}

// U (kt, 36, C_out, C_in) = G g G^T for every 3x3 filter g of weight (C_out, C_in, kt, 3, 3), read in place.
// Each output channel's filters are one contiguous block; they are gathered kChan input channels at a time into
// (9, kChan) so that both products run over channel vectors, and every U row written is C_in contiguous values.
template <typename S>
at::Tensor transform_weight(const at::Tensor& weight) {
  const at::Tensor w = weight.contiguous();
  const int64_t co_n = w.size(0), ci_n = w.size(1), kt_n = w.size(2);
  at::Tensor u = empty_huge({kt_n, kP, co_n, ci_n}, w.options());
  const S* wp = w.data_ptr<S>();
  S* up = u.data_ptr<S>();
  at::parallel_for(0, co_n * kt_n, 1, [&](int64_t begin, int64_t end) {
    S g[9][kChan], gg[kA][3][kChan], uu[kA][kA][kChan];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t co = row / kt_n, kt = row % kt_n;
      for (int64_t c0 = 0; c0 < ci_n; c0 += kChan) {
        const int64_t n = std::min(kChan, ci_n - c0);
        const S* src = wp + ((co * ci_n + c0) * kt_n + kt) * 9;
        for (int64_t c = 0; c < n; ++c)
          for (int k = 0; k < 9; ++k) g[k][c] = src[c * kt_n * 9 + k];
        // gg[a][j] = sum_i G[a][i] g[i][j], then u[a][b] = sum_j G[b][j] gg[a][j].
        for (int j = 0; j < 3; ++j) left_multiply<S>(kG, g[j], 3 * kChan, gg[0][j], 3 * kChan, n);
        for (int a = 0; a < kA; ++a) left_multiply<S>(kG, gg[a][0], kChan, uu[a][0], kChan, n);
        for (int p = 0; p < kP; ++p) std::copy_n(uu[p / kA][p % kA], n, up + ((kt * kP + p) * co_n + co) * ci_n + c0);
      }
    }
  });
  return u;
}

struct Geometry {
  int64_t ci, co, h, w;     // input channels, output channels of this block, frame size (input and output)
  int64_t co_stride;        // output channels of the whole output (its pixel stride)
  int64_t tiles_w;          // tiles per tile row
  int64_t band_rows;        // tile rows per band
};

// V (36, tiles, C_in) = BT d B of every input tile of one band of frame x (H, W, C_in): tile (r, c) reads
// rows 4r-1 .. 4r+4 and columns 4c-1 .. 4c+4 (zero outside the frame).
template <typename S>
void transform_input(const S* x, const Geometry& g, int64_t row0, int64_t rows, S* v) {
  const int64_t tiles = rows * g.tiles_w;
  S d[kA][kA][kChan], tmp[kA][kA][kChan];
  for (int64_t tr = 0; tr < rows; ++tr)
    for (int64_t tc = 0; tc < g.tiles_w; ++tc) {
      const int64_t tile = tr * g.tiles_w + tc;
      const int64_t h0 = (row0 + tr) * kM - 1, w0 = tc * kM - 1;
      for (int64_t c0 = 0; c0 < g.ci; c0 += kChan) {
        const int64_t n = std::min(kChan, g.ci - c0);
        for (int i = 0; i < kA; ++i)
          for (int j = 0; j < kA; ++j) {
            const int64_t h = h0 + i, w = w0 + j;
            if (h < 0 || h >= g.h || w < 0 || w >= g.w)
              std::fill(d[i][j], d[i][j] + n, S(0));
            else
              std::copy_n(x + (h * g.w + w) * g.ci + c0, n, d[i][j]);
          }
        // Columns of every row (tmp[i][b] = sum_j BT[b][j] d[i][j]), then rows (v[a][b] = sum_i BT[a][i] tmp[i][b]).
        for (int i = 0; i < kA; ++i) left_multiply<S>(kBT, d[i][0], kChan, tmp[i][0], kChan, n);
        for (int b = 0; b < kA; ++b)
          left_multiply<S>(kBT, tmp[0][b], kA * kChan, v + (b * tiles + tile) * g.ci + c0, kA * tiles * g.ci, n);
      }
    }
}

// out (H, W, C_out) of one band = AT m A + bias, from m (36, tiles, C_out); pixels outside the frame are dropped.
template <typename S>
void transform_output(const S* m, const S* bias, const Geometry& g, int64_t row0, int64_t rows, S* out) {
  const int64_t tiles = rows * g.tiles_w;
  S in[kA][kA][kChan], tmp[kA][kM][kChan];
  for (int64_t tr = 0; tr < rows; ++tr)
    for (int64_t tc = 0; tc < g.tiles_w; ++tc) {
      const int64_t tile = tr * g.tiles_w + tc;
      const int64_t h0 = (row0 + tr) * kM, w0 = tc * kM;
      for (int64_t c0 = 0; c0 < g.co; c0 += kChan) {
        const int64_t n = std::min(kChan, g.co - c0);
        for (int p = 0; p < kP; ++p) std::copy_n(m + (p * tiles + tile) * g.co + c0, n, in[p / kA][p % kA]);
        // Columns: tmp[i][b] = sum_j AT[b][j] in[i][j]; rows: y[a][b] = sum_i AT[a][i] tmp[i][b].
        for (int i = 0; i < kA; ++i) left_multiply<S>(kAT, in[i][0], kChan, tmp[i][0], kChan, n);
        for (int b = 0; b < kM; ++b) {
          const int64_t w = w0 + b;
          if (w >= g.w) break;
          S y[kM][kChan];
          left_multiply<S>(kAT, tmp[0][b], kM * kChan, y[0], kChan, n);
          for (int a = 0; a < kM; ++a) {
            const int64_t h = h0 + a;
            if (h >= g.h) break;
            S* o = out + (h * g.w + w) * g.co_stride + c0;
            if (bias)
              for (int64_t c = 0; c < n; ++c) o[c] = y[a][c] + bias[c0 + c];
            else
              std::copy_n(y[a], n, o);
          }
        }
      }
    }
}

// Output channels co0 .. co0 + u.size(2) of out, from their transformed weight u and bias (already offset). The
// input frames are those of ctx (B, C_in, Tc, H, W; Tc may be 0) followed by those of x.
template <typename S>
void run(const at::Tensor& ctx, const at::Tensor& x, const at::Tensor& u, const S* bias, int64_t kt_n, int64_t co0,
         at::Tensor& out) {
  const int64_t batch = x.size(0), t_ctx = ctx.size(2), t_x = x.size(2), t_out = out.size(2);
  Geometry g{x.size(1), u.size(2), x.size(3), x.size(4), out.size(1), 0, 0};
  const int64_t tiles_h = (g.h + kM - 1) / kM;
  g.tiles_w = (g.w + kM - 1) / kM;
  g.band_rows = std::clamp<int64_t>(kBandTiles / g.tiles_w, 1, tiles_h);
  const int64_t bands = (tiles_h + g.band_rows - 1) / g.band_rows;
  // Split time only as far as needed to give every thread a few items (each split re-transforms kt - 1 frames).
  const int64_t want = 4 * at::get_num_threads();
  const int64_t t_blocks = std::clamp<int64_t>((want + batch * bands - 1) / (batch * bands), 1, t_out);
  const int64_t t_block = (t_out + t_blocks - 1) / t_blocks;
  const int64_t frame_in = g.h * g.w * g.ci, frame_out = g.h * g.w * g.co_stride;
  const S* xp = x.data_ptr<S>();
  const S* cp = ctx.data_ptr<S>();
  auto frame = [&](int64_t b, int64_t ti) {
    return ti < t_ctx ? cp + (b * t_ctx + ti) * frame_in : xp + (b * t_x + ti - t_ctx) * frame_in;
  };
  const S* up = u.data_ptr<S>();
  S* op = out.data_ptr<S>() + co0;
  const int64_t band_tiles = g.band_rows * g.tiles_w;

  // Every thread's ring and accumulator in one allocation made here: large enough to be mmapped and returned to
  // the system when the call ends, where per-thread vectors would leave their heap arenas holding the memory.
  const int64_t ring_size = kt_n * kP * band_tiles * g.ci, scratch_size = ring_size + kP * band_tiles * g.co;
  at::Tensor scratch = empty_huge({at::get_num_threads(), scratch_size}, x.options());
  at::parallel_for(0, batch * bands * t_blocks, 1, [&](int64_t begin, int64_t end) {
    S* ring = scratch.data_ptr<S>() + at::get_thread_num() * scratch_size;
    S* acc = ring + ring_size;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / (bands * t_blocks), band = item / t_blocks % bands, tb = item % t_blocks;
      const int64_t row0 = band * g.band_rows, rows = std::min(g.band_rows, tiles_h - row0);
      const int64_t tiles = rows * g.tiles_w;
      const int64_t to0 = tb * t_block, to1 = std::min(t_out, to0 + t_block);
      const int64_t slot_size = kP * tiles * g.ci;
      for (int64_t ti = to0; ti < to1 + kt_n - 1; ++ti) {
        transform_input(frame(b, ti), g, row0, rows, ring + (ti % kt_n) * slot_size);
        const int64_t to = ti - (kt_n - 1);
        if (to < to0) continue;
        for (int p = 0; p < kP; ++p)
          for (int64_t kt = 0; kt < kt_n; ++kt)
            gemm<S>(false, true, tiles, g.co, g.ci, S(1),
                    ring + ((to + kt) % kt_n) * slot_size + p * tiles * g.ci, g.ci,
                    up + (kt * kP + p) * g.co * g.ci, g.ci, S(kt == 0 ? 0 : 1), acc + p * tiles * g.co,
                    g.co);
        transform_output(acc, bias, g, row0, rows, op + (b * t_out + to) * frame_out);
      }
    }
  });
}

}  // namespace

Tensor conv3d_3x3(const Tensor& input, const Tensor& weight, const OptTensor& bias, const OptTensor& context) {
  const int64_t t_ctx = context ? context->size(2) : 0;
  TORCH_CHECK(input.dim() == 5 && weight.dim() == 5 && weight.size(3) == 3 && weight.size(4) == 3 &&
                  weight.size(1) == input.size(1) && t_ctx + input.size(2) >= weight.size(2),
              "skiparse::conv3d_3x3: expected input (B, C_in, T, H, W) and weight (C_out, C_in, kt <= Tc + T, 3, 3), "
              "got ", input.sizes(), " and ", weight.sizes());
  TORCH_CHECK(!context || (context->dim() == 5 && context->size(0) == input.size(0) &&
                           context->size(1) == input.size(1) && context->size(3) == input.size(3) &&
                           context->size(4) == input.size(4) && context->scalar_type() == input.scalar_type()),
              "skiparse::conv3d_3x3: expected context (B, C_in, Tc, H, W) of the input's dtype, got ",
              context ? context->sizes() : input.sizes());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type() &&
                  (input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble),
              "skiparse::conv3d_3x3: the CPU kernel takes float32 or float64 input and weight of one dtype, got ",
              input.scalar_type(), " and ", weight.scalar_type());
  const int64_t kt_n = weight.size(2);
  at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast3d);
  // No context is an empty one: the frame lookup then never reads it.
  const at::Tensor ctx = context ? context->contiguous(at::MemoryFormat::ChannelsLast3d)
                                 : input.new_empty({input.size(0), input.size(1), 0, input.size(3), input.size(4)});
  at::Tensor out = at::empty({input.size(0), weight.size(0), t_ctx + input.size(2) - kt_n + 1, input.size(3),
                              input.size(4)},
                             input.options().memory_format(at::MemoryFormat::ChannelsLast3d));
  if (out.numel() == 0) return out;
  at::Tensor b;
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0) && bias->scalar_type() == input.scalar_type(),
                "skiparse::conv3d_3x3: expected bias (C_out,) of the input's dtype, got ", bias->sizes());
    b = bias->contiguous();
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "conv3d_3x3", [&] {
    // The transformed weight is 4x the weight: split it into equal blocks of output channels that fit
    // kWeightBudget. Each extra block re-transforms the input and narrows the GEMMs, so the budget is generous
    // (the WF-VAE's 768-channel convs take two blocks; their activations are far from the model's peak).
    const int64_t co_n = weight.size(0), per_channel = kt_n * kP * weight.size(1) * int64_t(sizeof(scalar_t));
    const int64_t blocks = (co_n * per_channel + kWeightBudget - 1) / kWeightBudget;
    const int64_t block = ((co_n + blocks - 1) / blocks + 15) / 16 * 16;
    for (int64_t co0 = 0; co0 < co_n; co0 += block) {
      const int64_t n = std::min(block, co_n - co0);
      at::Tensor u = transform_weight<scalar_t>(weight.narrow(0, co0, n));
      run<scalar_t>(ctx, x, u, b.defined() ? b.data_ptr<scalar_t>() + co0 : nullptr, kt_n, co0, out);
    }
  });
  return out;
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
