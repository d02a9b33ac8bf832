// CPU model of the part of AscendC's kernel_operator.h that kernels/copy_rows.cpp uses, so that the device code runs
// on the host (kernels_cpu_twin.cpp, tests/npu/test_npu_kernels_twin.py). Not CANN's CPU debug library: a small
// reimplementation of the documented semantics (DataCopyPad: blockLen in bytes, GM strides in bytes, UB strides in
// 32-byte blocks, every UB block starting on a 32-byte boundary). It throws std::logic_error where CANN refuses or
// real hardware would go wrong quietly: UB overflow (into its reserved API scratch too), an unaligned UB address, a
// copy out of bounds or beyond DataCopyPad's limits, a queue buffer used out of turn, a vector write read by MTE3
// without a V_MTE3 flag, a kernel that does not declare itself vector-only; the signatures reject what CANN's do
// (FreeTensor of a const tensor). Every instruction runs at once, in program order.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

#define __aicore__
#define __global__
#define __gm__
#define GM_ADDR uint8_t*

// Kernel types of KERNEL_TASK_TYPE_DEFAULT (CANN: global namespace, in this order).
enum KernelMetaType : uint8_t {
  KERNEL_TYPE_AIV_ONLY,
  KERNEL_TYPE_AIC_ONLY,
  KERNEL_TYPE_MIX_AIV_1_0,
  KERNEL_TYPE_MIX_AIC_1_0,
  KERNEL_TYPE_MIX_AIC_1_1,
  KERNEL_TYPE_MIX_AIC_1_2,
  KERNEL_TYPE_AICORE,
  KERNEL_TYPE_VECTORCORE,
  KERNEL_TYPE_MIX_AICORE,
  KERNEL_TYPE_MIX_VECTOR_CORE,
  KERNEL_TYPE_MAX,
};
// A statement in the kernel's body. Several kernels in one compilation unit turn off the compiler's inference of
// the kernel type, so the model requires the declaration: a kernel taken as MIX would start cube cores as well and
// blockDim would no longer count vector cores only.
#define KERNEL_TASK_TYPE_DEFAULT(value) ::AscendC::twin::declare_kernel_type(value)

namespace AscendC {

enum class TPosition : uint8_t { GM, VECIN, VECOUT, VECCALC };
enum class HardEvent : uint8_t { MTE2_V, V_MTE2, MTE3_V, V_MTE3, MTE2_MTE3, MTE3_MTE2 };
using TEventID = int8_t;

namespace twin {
inline int64_t block_idx = 0;                         // GetBlockIdx(): the driver sets it before running each core
inline KernelMetaType kernel_type = KERNEL_TYPE_MAX;  // KERNEL_TYPE_MAX: not declared by the running kernel
inline int64_t ub_bytes = 192 * 1024;                 // the UB of one vector core (the driver sets it)
constexpr uint64_t kBlock = 32;
// The top 8 KiB of the UB are the API's scratch (910B: a TPipe hands out TOTAL_VEC_LOCAL_SIZE = 184 of 192 KiB).
constexpr int64_t kReservedScratch = 8 * 1024;

[[noreturn]] inline void fail(const std::string& what) { throw std::logic_error("AscendC twin: " + what); }

// The driver's launch of one core: its block index, and no kernel type declared yet.
inline void start_core(int64_t core) {
  block_idx = core;
  kernel_type = KERNEL_TYPE_MAX;
}

inline void declare_kernel_type(KernelMetaType type) {
  if (type != KERNEL_TYPE_AIV_ONLY) fail("the model runs vector-only kernels (KERNEL_TYPE_AIV_ONLY)");
  kernel_type = type;
}

inline uint64_t align_block(uint64_t bytes) { return (bytes + kBlock - 1) / kBlock * kBlock; }

// A UB buffer of a queue or a TBuf, and which step of its life it is in.
struct Buffer {
  enum class State { Free, Allocated, Queued, Dequeued, Calc } state;
  uint8_t* data;
  uint64_t ub_offset;   // from the UB's start (32-byte aligned)
  uint64_t bytes;
  bool vector_written;  // by PIPE_V, not yet released to MTE3 by a V_MTE3 flag
};

class Pipe;
inline Pipe* current_pipe = nullptr;
}  // namespace twin

inline int64_t GetBlockIdx() { return twin::block_idx; }

template <typename T>
class LocalTensor {
 public:
  LocalTensor() = default;
  LocalTensor(twin::Buffer* buf, uint64_t offset, uint64_t bytes) : buf_(buf), offset_(offset), bytes_(bytes) {}
  LocalTensor operator[](uint32_t offset) const {
    const uint64_t skip = uint64_t{offset} * sizeof(T);
    if (skip > bytes_) twin::fail("LocalTensor[] past the buffer's end");
    return LocalTensor(buf_, offset_ + skip, bytes_ - skip);
  }
  template <typename U>
  LocalTensor<U> ReinterpretCast() const { return LocalTensor<U>(buf_, offset_, bytes_); }

  // Twin-only: the bytes [at, at + n) of this view, checked against the view and the buffer's 32-byte alignment.
  uint8_t* twin_bytes(uint64_t at, uint64_t n, bool aligned_start) const {
    if (buf_ == nullptr) twin::fail("LocalTensor without a buffer");
    if (aligned_start && (buf_->ub_offset + offset_) % twin::kBlock) twin::fail("UB address not 32-byte aligned");
    if (at + n > bytes_) twin::fail("UB access past the buffer's end");
    return buf_->data + offset_ + at;
  }
  twin::Buffer* twin_buffer() const { return buf_; }

 private:
  twin::Buffer* buf_ = nullptr;
  uint64_t offset_ = 0;  // bytes from the buffer's start
  uint64_t bytes_ = 0;   // bytes from offset_ to the buffer's end
};

template <typename T>
class GlobalTensor {
 public:
  void SetGlobalBuffer(__gm__ T* buffer, uint64_t bufferSize) {  // bufferSize in elements
    base_ = buffer;
    size_ = bufferSize;
    offset_ = 0;
  }
  GlobalTensor operator[](uint64_t offset) const {
    GlobalTensor g = *this;
    g.offset_ += offset;
    return g;
  }
  // Twin-only: the bytes [at, at + n) from this view's start, checked against the whole buffer.
  uint8_t* twin_bytes(uint64_t at, uint64_t n) const {
    if ((offset_ * sizeof(T) + at + n) > size_ * sizeof(T)) twin::fail("GM access out of bounds");
    return reinterpret_cast<uint8_t*>(base_ + offset_) + at;
  }

 private:
  T* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
};

struct DataCopyExtParams {
  DataCopyExtParams() = default;
  DataCopyExtParams(uint16_t count, uint32_t len, uint32_t srcStrideIn, uint32_t dstStrideIn, uint32_t rsvIn)
      : blockCount(count), blockLen(len), srcStride(srcStrideIn), dstStride(dstStrideIn), rsv(rsvIn) {}
  uint16_t blockCount = 1;
  uint32_t blockLen = 0;   // bytes
  uint32_t srcStride = 0;  // gap between blocks: bytes on GM, 32-byte blocks on the UB
  uint32_t dstStride = 0;
  uint32_t rsv = 0;
};

template <typename T>
struct DataCopyPadExtParams {
  DataCopyPadExtParams() = default;
  DataCopyPadExtParams(bool isPadValue, uint8_t leftPadValue, uint8_t rightPadValue, T padValue)
      : isPad(isPadValue), leftPadding(leftPadValue), rightPadding(rightPadValue), paddingValue(padValue) {}
  bool isPad = false;
  uint8_t leftPadding = 0;
  uint8_t rightPadding = 0;
  T paddingValue = 0;
};

namespace twin {
constexpr uint32_t kMaxBlockLen = 2097151;  // DataCopyExtParams::blockLen range [0, 2^21 - 1] bytes

inline void check_copy(const DataCopyExtParams& p, uint64_t elem) {
  if (p.blockCount < 1 || p.blockCount > 4095) fail("DataCopyPad blockCount outside [1, 4095]");
  if (p.blockLen < 1 || p.blockLen % elem) fail("DataCopyPad blockLen must be a positive multiple of sizeof(T)");
  if (p.blockLen > kMaxBlockLen)
    fail("DataCopyPad blockLen " + std::to_string(p.blockLen) + " beyond its limit of 2097151 bytes");
}
}  // namespace twin

// GM -> UB. Block i is read from GM at i * (blockLen + srcStride) bytes and lands in the UB at
// i * (align32(blockLen) + 32 * dstStride); the bytes up to the block boundary are filled with the block's first
// element (the documented "dummy" data when no padding is asked for).
template <typename T>
void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& p,
                 const DataCopyPadExtParams<T>& pad) {
  twin::check_copy(p, sizeof(T));
  if (pad.leftPadding || pad.rightPadding) twin::fail("DataCopyPad padding is not modelled");
  twin::Buffer* buf = dst.twin_buffer();
  if (buf == nullptr || (buf->state != twin::Buffer::State::Allocated && buf->state != twin::Buffer::State::Calc))
    twin::fail("DataCopyPad GM->UB into a buffer that is not allocated");
  const uint64_t ub_block = twin::align_block(p.blockLen);
  for (uint64_t i = 0; i < p.blockCount; ++i) {
    uint8_t* to = dst.twin_bytes(i * (ub_block + twin::kBlock * p.dstStride), ub_block, true);
    std::memcpy(to, src.twin_bytes(i * (uint64_t{p.blockLen} + p.srcStride), p.blockLen), p.blockLen);
    for (uint64_t b = p.blockLen; b < ub_block; b += sizeof(T)) std::memcpy(to + b, to, sizeof(T));
  }
}

// UB -> GM. Block i is read from the UB at i * (align32(blockLen) + 32 * srcStride) and written, exactly blockLen
// bytes, to GM at i * (blockLen + dstStride) bytes.
template <typename T>
void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& p) {
  twin::check_copy(p, sizeof(T));
  const twin::Buffer* buf = src.twin_buffer();
  if (buf == nullptr || (buf->state != twin::Buffer::State::Dequeued && buf->state != twin::Buffer::State::Calc))
    twin::fail("DataCopyPad UB->GM from a queue buffer that was not dequeued");
  if (buf->vector_written) twin::fail("DataCopyPad UB->GM reads a vector result without a V_MTE3 flag");
  const uint64_t ub_block = twin::align_block(p.blockLen);
  for (uint64_t i = 0; i < p.blockCount; ++i)
    std::memcpy(dst.twin_bytes(i * (uint64_t{p.blockLen} + p.dstStride), p.blockLen),
                src.twin_bytes(i * (ub_block + twin::kBlock * p.srcStride), p.blockLen, true), p.blockLen);
}

// A vector instruction (PIPE_V): MTE3 may read its result only after a V_MTE3 flag.
template <typename T>
void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, const int32_t& count) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "Duplicate takes 16- and 32-bit types");
  twin::Buffer* buf = dst.twin_buffer();
  if (buf == nullptr || buf->state == twin::Buffer::State::Free || buf->state == twin::Buffer::State::Queued)
    twin::fail("Duplicate into a buffer that is not allocated");
  uint8_t* to = dst.twin_bytes(0, uint64_t(count) * sizeof(T), true);
  for (int32_t i = 0; i < count; ++i) std::memcpy(to + i * sizeof(T), &scalarValue, sizeof(T));
  buf->vector_written = true;
}

namespace twin {
class Pipe {
 public:
  Pipe() : ub_(static_cast<size_t>(ub_bytes), 0xCD) {
    if (kernel_type == KERNEL_TYPE_MAX)
      fail("kernel type not declared: a unit with several kernels needs "
           "KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY)");
    current_pipe = this;
  }
  ~Pipe() { current_pipe = nullptr; }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  Buffer* allocate(uint64_t bytes, Buffer::State state) {
    const uint64_t size = align_block(bytes);
    const uint64_t usable = ub_.size() > uint64_t{kReservedScratch} ? ub_.size() - kReservedScratch : 0;
    if (used_ + size > usable)
      fail("UB overflow: TPipe buffers of " + std::to_string(used_ + size) + " bytes, but " + std::to_string(usable) +
           " of the " + std::to_string(ub_.size()) + "-byte UB lie below its reserved API scratch (the top " +
           std::to_string(kReservedScratch) + " bytes)");
    buffers_.push_back(Buffer{state, ub_.data() + used_, used_, size, false});
    used_ += size;
    return &buffers_.back();
  }
  void release_vector_writes() {
    for (Buffer& b : buffers_) b.vector_written = false;
  }
  bool flags_[8][8] = {};  // [HardEvent][event id]: set and not yet waited for

 private:
  std::vector<uint8_t> ub_;
  std::deque<Buffer> buffers_;  // a deque keeps Buffer addresses stable
  uint64_t used_ = 0;
};
}  // namespace twin

// A queue binding two UB positions. With no vector step in between (VECIN -> VECOUT), EnQue/DeQue order the MTE2
// copy that filled a buffer before the MTE3 copy that drains it; AllocTensor hands out a free buffer.
template <TPosition Src, TPosition Dst, int32_t Depth>
class TQueBind {
 public:
  template <typename T>
  LocalTensor<T> AllocTensor() {
    for (twin::Buffer* b : buffers_) {
      if (b->state != twin::Buffer::State::Free) continue;
      b->state = twin::Buffer::State::Allocated;
      std::memset(b->data, 0xCD, b->bytes);  // a fresh buffer holds whatever was there
      return LocalTensor<T>(b, 0, b->bytes);
    }
    twin::fail("AllocTensor with every buffer of the queue in use (the core would wait forever)");
  }
  template <typename T>
  bool EnQue(const LocalTensor<T>& tensor) {
    twin::Buffer* b = tensor.twin_buffer();
    if (b == nullptr || b->state != twin::Buffer::State::Allocated) twin::fail("EnQue of a tensor not allocated");
    if (queued_.size() >= static_cast<size_t>(Depth)) twin::fail("EnQue past the queue's depth");
    b->state = twin::Buffer::State::Queued;
    queued_.push_back(b);
    return true;
  }
  template <typename T>
  LocalTensor<T> DeQue() {
    if (queued_.empty()) twin::fail("DeQue of an empty queue");
    twin::Buffer* b = queued_.front();
    queued_.pop_front();
    b->state = twin::Buffer::State::Dequeued;
    return LocalTensor<T>(b, 0, b->bytes);
  }
  template <typename T>
  void FreeTensor(LocalTensor<T>& tensor) {  // as CANN's: a const tensor does not compile
    twin::Buffer* b = tensor.twin_buffer();
    if (b == nullptr || (b->state != twin::Buffer::State::Dequeued && b->state != twin::Buffer::State::Allocated))
      twin::fail("FreeTensor of a tensor the queue did not hand out");
    b->state = twin::Buffer::State::Free;
  }
  std::vector<twin::Buffer*> buffers_;  // filled by TPipe::InitBuffer

 private:
  std::deque<twin::Buffer*> queued_;
};

// A plain UB buffer, synchronised by hand (SetFlag/WaitFlag).
template <TPosition Pos>
class TBuf {
 public:
  template <typename T>
  LocalTensor<T> Get() {
    if (buffer_ == nullptr) twin::fail("TBuf::Get before TPipe::InitBuffer");
    return LocalTensor<T>(buffer_, 0, buffer_->bytes);
  }
  twin::Buffer* buffer_ = nullptr;  // set by TPipe::InitBuffer
};

class TPipe {
 public:
  template <TPosition Src, TPosition Dst, int32_t Depth>
  bool InitBuffer(TQueBind<Src, Dst, Depth>& que, uint8_t num, uint32_t len) {
    for (uint8_t i = 0; i < num; ++i) que.buffers_.push_back(pipe_.allocate(len, twin::Buffer::State::Free));
    return true;
  }
  template <TPosition Pos>
  bool InitBuffer(TBuf<Pos>& buf, uint32_t bufferSize) {
    buf.buffer_ = pipe_.allocate(bufferSize, twin::Buffer::State::Calc);
    return true;
  }
  TEventID FetchEventID(HardEvent) { return 0; }

 private:
  twin::Pipe pipe_;
};

template <HardEvent E>
void SetFlag(int32_t eventID) {
  if (twin::current_pipe == nullptr) twin::fail("SetFlag without a TPipe");
  twin::current_pipe->flags_[static_cast<int>(E)][eventID & 7] = true;
}

template <HardEvent E>
void WaitFlag(int32_t eventID) {
  if (twin::current_pipe == nullptr) twin::fail("WaitFlag without a TPipe");
  bool& flag = twin::current_pipe->flags_[static_cast<int>(E)][eventID & 7];
  if (!flag) twin::fail("WaitFlag without a matching SetFlag (the core would wait forever)");
  flag = false;
  if (E == HardEvent::V_MTE3) twin::current_pipe->release_vector_writes();
}

}  // namespace AscendC
