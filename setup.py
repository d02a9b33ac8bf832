"""Build of skiparse: the Python packages plus the optional C++ CPU extension ``skiparse._C``.

Install with ``pip install --no-build-isolation .`` so that the build uses the torch already installed (an isolated
build would download a CUDA torch). ``SKIPARSE_BUILD_CPU=0`` skips the extension; the package then runs on the
PyTorch reference. The Ascend NPU kernels (``skiparse/lib/libskiparse_npu.so``) are built through CMakeLists.txt
when the CANN toolkit (``ASCEND_HOME_PATH``) and torch_npu are found, and skipped with a message otherwise.
"""
import importlib.util
import os
import platform
import subprocess
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
    sources = ["csrc/cpu/module.cpp", "csrc/cpu/checks.cpp", "csrc/cpu/reorder.cpp", "csrc/cpu/dispatch.cpp"]
    if platform.machine() in ("x86_64", "AMD64"):
        # The floor is AVX2 (at::vec uses it when these are set; skiparse._C reports, and is not used, on CPUs
        # without it). The attention and conv kernels are built once more for AVX-512 and chosen at run time
        # (csrc/cpu/dispatch.cpp). Keep the ISA builds last: the linker keeps the first copy of shared inline code.
        flags += ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-DSKIPARSE_ISA_X86"]
        sources += ["csrc/cpu/isa/kernels_avx2.cpp", "csrc/cpu/isa/kernels_avx512.cpp"]
    else:
        sources += ["csrc/cpu/isa/kernels_default.cpp"]
    ext = CppExtension(
        "skiparse._C",
        sources=sources,
        include_dirs=[os.path.abspath("csrc")],
        extra_compile_args=flags,
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": with_npu(BuildExtension.with_options(use_ninja=True))}


def build_npu(cmd) -> None:
    """CMake build of the AscendC kernels and their host glue into skiparse/lib, where CANN and torch_npu are."""
    home = os.environ.get("ASCEND_HOME_PATH")
    if not home:
        print("skiparse: CANN toolkit not found (ASCEND_HOME_PATH is not set; source <CANN>/set_env.sh): "
              "building without the NPU kernels", file=sys.stderr)
        return
    if importlib.util.find_spec("torch_npu") is None:
        print(f"skiparse: CANN found at {home} but torch_npu is not installed: building without the NPU kernels",
              file=sys.stderr)
        return
    root = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(root if cmd.inplace else os.path.abspath(cmd.build_lib), "skiparse", "lib")
    build = os.path.join(os.path.abspath(cmd.build_temp), "npu")
    soc = os.environ.get("SOC_VERSION", "Ascend910B1")
    subprocess.check_call(["cmake", "-S", root, "-B", build, f"-DSOC_VERSION={soc}",
                           f"-DPython3_EXECUTABLE={sys.executable}", f"-DSKIPARSE_NPU_OUTPUT_DIR={out}"])
    subprocess.check_call(["cmake", "--build", build, "--parallel", os.environ.get("MAX_JOBS", "4")])


def with_npu(build_ext):
    class BuildExtWithNpu(build_ext):
        def run(self):
            super().run()
            build_npu(self)

    return BuildExtWithNpu


ext_modules, cmdclass = cpu_extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
