"""Build of skiparse: the Python packages plus the optional C++ CPU extension ``skiparse._C``.

Install with ``pip install --no-build-isolation .`` so that the build uses the torch already installed (an isolated
build would download a CUDA torch). ``SKIPARSE_BUILD_CPU=0`` skips the extension; the package then runs on the
PyTorch reference. The Ascend NPU kernels are built by CMakeLists.txt only where the CANN toolkit is found.
"""
import os
import platform
import sys

from setuptools import setup


def cpu_extension():
    if os.environ.get("SKIPARSE_BUILD_CPU", "1") == "0":
        print("skiparse: SKIPARSE_BUILD_CPU=0, building without skiparse._C", file=sys.stderr)
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("skiparse: torch is not importable at build time, building without skiparse._C", file=sys.stderr)
        return [], {}
    flags = ["-O3", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64"):
        # at::vec uses AVX2 when these are set; skiparse._C reports (and is not used) on CPUs without AVX2.
        flags += ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    ext = CppExtension(
        "skiparse._C",
        sources=[
            "csrc/cpu/module.cpp",
            "csrc/cpu/reorder.cpp",
            "csrc/cpu/attention_fwd.cpp",
            "csrc/cpu/attention_bwd.cpp",
        ],
        include_dirs=[os.path.abspath("csrc")],
        extra_compile_args=flags,
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = cpu_extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
