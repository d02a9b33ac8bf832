// AscendC device code of the reorder and restore kernels (launched by ../host.cpp, partitioned by ../tiling.h).
//
// Both move whole rows as bytes, so one build serves every dtype. Each AI vector core copies its rows
// [core_begin, core_end) of the joint layout (tiling.h: every sub-sequence's video rows, then a copy of the text),
// up to rows_per_chunk rows (or one cols_per_chunk part of a very wide row) per UB transfer, through two buffers so
// that one is read in while the other is written out:
//   reorder  gathers the rows' scattered sources (video or text rows) one by one, then writes the contiguous output
//            block in one copy; padding rows are written from a zeroed UB row.
//   restore  reads the contiguous input block in one copy, then scatters its video rows; padding and text rows are
//            skipped (the text copies are averaged by the caller).
// DataCopyPad starts every row it brings into the UB on a 32-byte boundary: a buffer holds rows_per_chunk rows of
// chunk_row_pitch bytes. All offsets are in bytes (`col`: from the start of a row).
// On machines without CANN this file runs on the host against stubs/kernel_operator.h (kernels_cpu_twin.cpp).
#include "kernel_operator.h"

#define SKIPARSE_DEVICE
#define SKIPARSE_INLINE __aicore__ inline
#include "../tiling.h"

namespace {

using skiparse::npu::ReorderTiling;
using skiparse::npu::source_row;
using skiparse::npu::text_row;

constexpr int32_t kBuffers = 2;  // double buffering; the queue itself never holds more than one (depth 1)

// The host copied the tiling struct, all int64_t, to GM: read it word by word with scalar loads.
__aicore__ inline ReorderTiling load_tiling(GM_ADDR gm) {
  static_assert(sizeof(ReorderTiling) % sizeof(int64_t) == 0, "ReorderTiling holds only int64_t fields");
  ReorderTiling t;
  const __gm__ int64_t* words = reinterpret_cast<const __gm__ int64_t*>(gm);
  int64_t* fields = reinterpret_cast<int64_t*>(&t);
  for (uint32_t i = 0; i < sizeof(ReorderTiling) / sizeof(int64_t); ++i) fields[i] = words[i];
  return t;
}

template <bool kReorder>
class CopyRows {
 public:
  // text: the (B, T, C) text rows copied after every sub-sequence (reorder only; unused when T = 0).
  __aicore__ inline CopyRows(GM_ADDR src, GM_ADDR text, GM_ADDR dst, GM_ADDR tiling) : t_(load_tiling(tiling)) {
    row_bytes_ = t_.features * t_.elem_bytes;
    part_bytes_ = t_.cols_per_chunk * t_.elem_bytes;
    const int64_t pitch = skiparse::npu::chunk_row_pitch(t_);
    const int64_t natural_bytes = t_.batch * t_.length * row_bytes_, joint_bytes = t_.total_rows * row_bytes_;
    src_.SetGlobalBuffer(reinterpret_cast<__gm__ uint8_t*>(src), kReorder ? natural_bytes : joint_bytes);
    dst_.SetGlobalBuffer(reinterpret_cast<__gm__ uint8_t*>(dst), kReorder ? joint_bytes : natural_bytes);
    if (kReorder && t_.text_length > 0)
      text_.SetGlobalBuffer(reinterpret_cast<__gm__ uint8_t*>(text), t_.batch * t_.text_length * row_bytes_);
    pipe_.InitBuffer(que_, kBuffers, static_cast<uint32_t>(t_.rows_per_chunk * pitch));
    if (kReorder) {
      // Zeros for the padding rows, written once by the vector unit: MTE3 must wait for it before any copy.
      pipe_.InitBuffer(zeros_, static_cast<uint32_t>(pitch));
      AscendC::Duplicate(zeros_.Get<int16_t>(), int16_t(0), static_cast<int32_t>(pitch / sizeof(int16_t)));
      const AscendC::TEventID zeros_ready = pipe_.FetchEventID(AscendC::HardEvent::V_MTE3);
      AscendC::SetFlag<AscendC::HardEvent::V_MTE3>(zeros_ready);
      AscendC::WaitFlag<AscendC::HardEvent::V_MTE3>(zeros_ready);
    }
  }

  // Runs of consecutive rows that are copied, up to rows_per_chunk at a time; each row part of a run is one
  // transfer. Reorder copies video and text rows (zero-filling padding); restore copies video rows only.
  __aicore__ inline void Process() {
    const int64_t core = AscendC::GetBlockIdx();
    const int64_t end = skiparse::npu::core_end(t_, core);
    for (int64_t row = skiparse::npu::core_begin(t_, core); row < end;) {
      if (!Copied(row)) {
        if (kReorder) ZeroRow(row);  // a padding row (restore skips padding and text rows)
        ++row;
        continue;
      }
      int64_t rows = 1;
      while (rows < t_.rows_per_chunk && row + rows < end && Copied(row + rows)) ++rows;
      for (int64_t col = 0; col < row_bytes_; col += part_bytes_) {
        const int64_t bytes = PartBytes(col);
        CopyIn(row, rows, col, bytes);
        CopyOut(row, rows, col, bytes);
      }
      row += rows;
    }
  }

 private:
  __aicore__ inline bool Copied(int64_t row) const {
    return source_row(t_, row) >= 0 || (kReorder && text_row(t_, row) >= 0);
  }

  // Where joint row `row`'s bytes come from in the reorder: its video row, else its text row.
  __aicore__ inline AscendC::GlobalTensor<uint8_t> Source(int64_t row, int64_t col) const {
    const int64_t video = source_row(t_, row);
    return video >= 0 ? src_[video * row_bytes_ + col] : text_[text_row(t_, row) * row_bytes_ + col];
  }

  // Bytes of the row part that starts at byte `col`: the whole row, or a cols_per_chunk part of a wide one.
  __aicore__ inline int64_t PartBytes(int64_t col) const {
    return row_bytes_ - col < part_bytes_ ? row_bytes_ - col : part_bytes_;
  }

  // `rows` blocks of `bytes`: back to back on GM (several rows are only moved together when a part is a whole
  // row), each starting a 32-byte block in the UB.
  __aicore__ inline AscendC::DataCopyExtParams Blocks(int64_t rows, int64_t bytes) const {
    return {static_cast<uint16_t>(rows), static_cast<uint32_t>(bytes), 0, 0, 0};
  }

  __aicore__ inline void CopyIn(int64_t row, int64_t rows, int64_t col, int64_t bytes) {
    AscendC::LocalTensor<uint8_t> buf = que_.AllocTensor<uint8_t>();
    const AscendC::DataCopyPadExtParams<uint8_t> no_pad{false, 0, 0, 0};
    if (kReorder) {  // gather
      const int64_t ub_row = skiparse::npu::align_ub_block(bytes);
      for (int64_t i = 0; i < rows; ++i)
        AscendC::DataCopyPad(buf[i * ub_row], Source(row + i, col), Blocks(1, bytes), no_pad);
    } else {
      AscendC::DataCopyPad(buf, src_[row * row_bytes_ + col], Blocks(rows, bytes), no_pad);
    }
    que_.EnQue(buf);
  }

  __aicore__ inline void CopyOut(int64_t row, int64_t rows, int64_t col, int64_t bytes) {
    AscendC::LocalTensor<uint8_t> buf = que_.DeQue<uint8_t>();
    if (kReorder) {
      AscendC::DataCopyPad(dst_[row * row_bytes_ + col], buf, Blocks(rows, bytes));
    } else {  // scatter
      const int64_t ub_row = skiparse::npu::align_ub_block(bytes);
      for (int64_t i = 0; i < rows; ++i)
        AscendC::DataCopyPad(dst_[source_row(t_, row + i) * row_bytes_ + col], buf[i * ub_row],
                             Blocks(1, bytes));
    }
    que_.FreeTensor(buf);
  }

  __aicore__ inline void ZeroRow(int64_t row) {
    for (int64_t col = 0; col < row_bytes_; col += part_bytes_)
      AscendC::DataCopyPad(dst_[row * row_bytes_ + col], zeros_.Get<uint8_t>(), Blocks(1, PartBytes(col)));
  }

  const ReorderTiling t_;
  int64_t row_bytes_;
  int64_t part_bytes_;  // cols_per_chunk elements
  AscendC::TPipe pipe_;
  AscendC::TQueBind<AscendC::TPosition::VECIN, AscendC::TPosition::VECOUT, 1> que_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> zeros_;
  AscendC::GlobalTensor<uint8_t> src_, text_, dst_;
};

}  // namespace

// Two kernels in one unit: the compiler no longer infers their type, so each declares itself vector-only (blockDim
// then counts AI vector cores, as the tiling assumes).

// (B, L, C) video and (B, T, C) text rows -> (k*B, SUB + T, C) joint rows, padding rows zero-filled.
extern "C" __global__ __aicore__ void skiparse_reorder(GM_ADDR src, GM_ADDR text, GM_ADDR dst, GM_ADDR tiling) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);
  CopyRows<true> op(src, text, dst, tiling);
  op.Process();
}

// (k*B, SUB + T, C) joint rows -> (B, L, C) video rows; padding and text rows dropped.
extern "C" __global__ __aicore__ void skiparse_restore(GM_ADDR src, GM_ADDR dst, GM_ADDR tiling) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);
  CopyRows<false> op(src, nullptr, dst, tiling);
  op.Process();
}
