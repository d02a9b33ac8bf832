"""Backend selection: env var, context manager, auto, clear errors, and the info report."""
import asyncio
import importlib.util
import subprocess
import sys
import threading
import warnings

import pytest
import torch

import skiparse
from skiparse import backends
from skiparse_testing import requires_cpu_ext


def test_unknown_backend_names_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="expected one of auto, reference, cpu, triton, npu"):
        with skiparse.use_backend("cuda"):
            pass
    monkeypatch.setenv("SKIPARSE_BACKEND", "fast")
    with pytest.raises(ValueError, match="SKIPARSE_BACKEND: unknown skiparse backend 'fast'"):
        skiparse.reorder(torch.randn(2, 8), 2)


def test_context_manager_nests_and_beats_env(monkeypatch):
    monkeypatch.setenv("SKIPARSE_BACKEND", "reference")
    assert backends.requested() == "reference"
    with skiparse.use_backend("auto"):
        assert backends.requested() == "auto"
        with skiparse.use_backend("reference"):
            assert backends.requested() == "reference"
        assert backends.requested() == "auto"
    assert backends.requested() == "reference"


def test_use_backend_is_not_seen_by_other_threads(monkeypatch):
    monkeypatch.setenv("SKIPARSE_BACKEND", "auto")
    entered, checked = threading.Event(), threading.Event()
    seen = {}

    def other():
        entered.wait(10)
        seen["other"] = backends.requested()  # the env default, not this thread's neighbour's block
        checked.set()

    thread = threading.Thread(target=other)
    thread.start()
    with skiparse.use_backend("reference"):
        entered.set()
        checked.wait(10)
        seen["own"] = backends.requested()
    thread.join()
    assert seen == {"other": "auto", "own": "reference"}


def test_use_backend_interleaved_exits_restore_each_threads_choice(monkeypatch):
    """Thread a enters, b enters, a exits, b checks, b exits: each exit restores its own thread's choice."""
    monkeypatch.setenv("SKIPARSE_BACKEND", "auto")
    steps = [threading.Event() for _ in range(4)]
    seen = {}

    def a():
        with skiparse.use_backend("reference"):
            steps[0].set()
            steps[1].wait(10)  # b has entered
        seen["a after exit"] = backends.requested()
        steps[2].set()

    def b():
        steps[0].wait(10)
        with skiparse.use_backend("cpu"):
            steps[1].set()
            steps[2].wait(10)  # a has exited
            seen["b inside"] = backends.requested()
        seen["b after exit"] = backends.requested()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a after exit": "auto", "b inside": "cpu", "b after exit": "auto"}
    assert backends.requested() == "auto"


def test_use_backend_is_per_asyncio_task():
    async def task(name, seen):
        with skiparse.use_backend(name):
            await asyncio.sleep(0.01)  # the other task enters and exits its block meanwhile
            seen[name] = backends.requested()

    async def main():
        seen = {}
        await asyncio.gather(task("reference", seen), task("cpu", seen))
        return seen

    with skiparse.use_backend("auto"):
        assert asyncio.run(main()) == {"reference": "reference", "cpu": "cpu"}
        assert backends.requested() == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="uses triton as the backend that cannot run")
def test_compiled_call_reads_use_backend_at_trace_time():
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: skiparse.reorder(x, 2) * 2, fullgraph=True, backend="aot_eager")
    with skiparse.use_backend("triton"), pytest.raises(Exception, match="'triton' is not available"):
        compiled(torch.randn(2, 10, 3))
    torch._dynamo.reset()


@requires_cpu_ext
def test_auto_picks_the_cpu_kernels_for_cpu_tensors():
    with skiparse.use_backend("auto"):
        assert backends.resolve(torch.device("cpu")) == "cpu"


def test_unavailable_backend_raises_with_reason():
    with skiparse.use_backend("triton"), pytest.raises(RuntimeError, match="'triton' is not available: "):
        skiparse.reorder(torch.randn(2, 8), 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("interpret", ["0", "1"])
def test_without_cuda_auto_never_picks_triton(monkeypatch, interpret):
    from skiparse.backends import triton as triton_backend

    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    ok, why = triton_backend.probe()
    assert not ok
    if importlib.util.find_spec("triton") is None:
        assert "triton is not installed" in why
    else:
        assert "no CUDA device" in why
        assert ("TRITON_INTERPRET=1 runs the kernels on CPU tensors for tests" in why) == (interpret == "1")
    with skiparse.use_backend("auto"):
        assert backends.resolve(torch.device("cpu")) in ("cpu", "reference")


@requires_cpu_ext
def test_backend_for_another_device_is_refused():
    with skiparse.use_backend("cpu"), pytest.raises(ValueError, match="runs cpu tensors, got tensors on meta"):
        skiparse.reorder(torch.randn(2, 8, device="meta"), 2)


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    monkeypatch.setattr(backends, "status", lambda name: (name == "reference", f"{name} off for this test"))
    backends._warn_fallback.cache_clear()
    x = torch.randn(2, 10, 3)
    with pytest.warns(RuntimeWarning, match="cpu off for this test.*using the PyTorch reference"):
        y = skiparse.reorder(x, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call does not warn again
        skiparse.reorder(x, 2)
    assert torch.equal(skiparse.restore(y, 2, length=10), x)
    backends._warn_fallback.cache_clear()


def test_info_lists_every_backend_with_a_reason():
    out = subprocess.run([sys.executable, "-m", "skiparse.info"], capture_output=True, text=True, check=True).stdout
    for name in ("reference", "cpu", "triton", "npu"):
        line = next(l for l in out.splitlines() if l.strip().startswith(name))
        assert (" on " in line) or (" off " in line)
        assert len(line.split("]", 1)[1].strip()) > 10  # a reason, not just a flag
    assert "no CUDA device" in out
    assert "torch_npu" in out


def test_import_without_extension_still_works():
    code = (
        "import sys; sys.modules['skiparse._C'] = None\n"  # simulates a build without the extension
        "import torch, warnings, skiparse\n"
        "from skiparse.backends import status\n"
        "assert not status('cpu')[0] and 'not built' in status('cpu')[1], status('cpu')\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    out, _ = skiparse.skiparse_attention(*[torch.randn(1, 9, 1, 4)] * 3, sparsity=2)\n"
        "assert out.shape == (1, 9, 1, 4)\n"
        "assert any('using the PyTorch reference' in str(x.message) for x in w)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
