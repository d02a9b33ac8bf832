"""CMakeLists.txt configures against a stub CANN tree: a fake ``ascendc.cmake`` whose ``ascendc_library`` records what
it receives and, like CANN's object-merging step (``merge_mix_obj.sh --build-type ${CMAKE_BUILD_TYPE}``), fails on an
empty build type; a ``torch_npu`` package that is only located, never imported. Only the configure step runs: the
kernels and the host glue need the real toolkit to build."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CMAKE = shutil.which("cmake")
pytestmark = pytest.mark.skipif(CMAKE is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler")

LOCATIONS = ("compiler/tikcpp/ascendc_kernel_cmake", "tools/tikcpp/ascendc_kernel_cmake",
             "ascendc_devkit/tikcpp/samples/cmake")

STUB_ASCENDC = """
set(STUB_ASCENDC_DIR "${CMAKE_CURRENT_LIST_DIR}")
function(ascendc_library name type)
  if("${CMAKE_BUILD_TYPE}" STREQUAL "")
    message(FATAL_ERROR "stub merge_mix_obj.sh: --build-type has no value")
  endif()
  file(WRITE "${CMAKE_BINARY_DIR}/ascendc_library.txt"
       "name=${name}\\ntype=${type}\\nsources=${ARGN}\\nbuild_type=${CMAKE_BUILD_TYPE}\\nsoc=${SOC_VERSION}\\n"
       "package=${ASCEND_CANN_PACKAGE_PATH}\\nmodule_dir=${STUB_ASCENDC_DIR}\\n")
  add_library(${name} INTERFACE)
endfunction()
"""


def configure(tmp_path: Path, location: str | None, *extra: str):
    """Runs the configure step against a stub CANN tree with ascendc.cmake at ``location``; returns (result, record)."""
    cann = tmp_path / "cann"
    cann.mkdir()
    if location is not None:
        (cann / location).mkdir(parents=True)
        (cann / location / "ascendc.cmake").write_text(STUB_ASCENDC)
    site = tmp_path / "site"
    (site / "torch_npu").mkdir(parents=True)
    (site / "torch_npu" / "__init__.py").write_text("")
    env = dict(os.environ, ASCEND_HOME_PATH=str(cann),
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    build = tmp_path / "build"
    result = subprocess.run([CMAKE, "-S", str(ROOT), "-B", str(build), f"-DPython3_EXECUTABLE={sys.executable}",
                             f"-DSKIPARSE_NPU_OUTPUT_DIR={tmp_path / 'lib'}", *extra],
                            capture_output=True, text=True, env=env)
    record_file = build / "ascendc_library.txt"
    record = dict(line.split("=", 1) for line in record_file.read_text().splitlines()) if record_file.exists() else None
    return result, record


@pytest.mark.parametrize("location", LOCATIONS)
def test_every_ascendc_cmake_location_is_found_and_the_build_type_defaults_to_release(tmp_path, location):
    result, record = configure(tmp_path, location)
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["module_dir"] == str(tmp_path / "cann" / location)
    assert record["build_type"] == "Release"
    assert record["name"] == "skiparse_npu_kernels" and record["type"] == "STATIC"
    assert record["sources"] == "csrc/npu/kernels/copy_rows.cpp"
    assert record["soc"] == "Ascend910B1" and record["package"] == str(tmp_path / "cann")


@pytest.mark.parametrize("given,used", [("Debug", "Debug"), ("", "Release")])
def test_a_given_build_type_is_kept_and_an_empty_one_replaced(tmp_path, given, used):
    result, record = configure(tmp_path, LOCATIONS[2], f"-DCMAKE_BUILD_TYPE={given}", "-DSOC_VERSION=Ascend910B3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["build_type"] == used and record["soc"] == "Ascend910B3"


def test_a_toolkit_without_ascendc_cmake_is_refused_naming_the_places_searched(tmp_path):
    result, record = configure(tmp_path, None)
    assert result.returncode != 0 and record is None
    assert "ascendc.cmake not found" in result.stderr
    for location in LOCATIONS:
        assert location in result.stderr.replace("\n", "")
