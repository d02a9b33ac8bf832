// Large kernel scratch on transparent huge pages. A fresh multi-MB buffer otherwise costs one page fault per 4 KiB
// on first touch, which for the Winograd conv's transformed weight took longer than computing it.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace skiparse::cpu::CPU_CAPABILITY {  // per ISA build, as gemm.h

// at::empty(sizes, options) on a CPU buffer aligned to 2 MiB and advised for huge pages (Linux; elsewhere, and
// below one huge page, plain at::empty). Freed with the tensor.
inline at::Tensor empty_huge(at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * options.dtype().itemsize();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= kHuge) {
    const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
    void* p = nullptr;
    if (posix_memalign(&p, kHuge, rounded) != 0) throw std::bad_alloc();
    madvise(p, rounded, MADV_HUGEPAGE);  // advisory: without THP the buffer simply stays on small pages
    return at::from_blob(p, sizes, [](void* q) { std::free(q); }, options);
  }
#endif
  return at::empty(sizes, options);
}

}  // namespace skiparse::cpu::CPU_CAPABILITY
