"""How the gateway learns the CUDA its runtimes need and loads pip's CUDA libraries: from what
onnxruntime ships (`capi.build_and_package_info.cuda_version`, `preload_dlls`), no copy of its
own. This machine has a CPU build, so the GPU build is SIMULATED (a stand-in module with the
attributes onnxruntime-gpu has); the real CPU build is checked as it is."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import onnxruntime
import pytest

from gateway.engines import cuda


def _fake_ort(cuda_version: str | None, printed: str = "", preload: bool = True) -> Any:
    info = SimpleNamespace(package_name="onnxruntime-gpu", __version__="1.26.0")
    if cuda_version is not None:
        info.cuda_version = cuda_version
    calls: list[int] = []

    def preload_dlls() -> None:
        calls.append(1)
        if printed:
            print(printed)

    module = SimpleNamespace(capi=SimpleNamespace(build_and_package_info=info), calls=calls)
    if preload:
        module.preload_dlls = preload_dlls
    return module


def test_simulated_gpu_build_names_its_cuda_and_the_mismatch_with_ctranslate2() -> None:
    cuda12, cuda13 = _fake_ort("12.8"), _fake_ort("13.0")
    assert cuda.ort_cuda_version(cuda12.capi.build_and_package_info) == "12.8"
    assert cuda.mismatch("12.8", (4, 8)) is None
    why = cuda.mismatch(cuda.ort_cuda_version(cuda13.capi.build_and_package_info), (4, 8))
    assert why and "CUDA 13.0" in why and "libcublas.so.12" in why and " Fix: " in why
    assert cuda.mismatch(None, (4, 8)) is None and cuda.mismatch("13.0", None) is None


def test_the_installed_cpu_build_has_no_cuda_and_preloads_nothing() -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a GPU build of onnxruntime is installed: the simulated tests cover this")
    assert cuda.ort_cuda_version() is None
    assert cuda.installed_mismatch() is None
    assert cuda.preload_cuda() is False


def test_simulated_preload_goes_through_onnxruntime_and_logs_what_it_printed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gpu = _fake_ort("12.8", printed="Failed to load libcudnn.so.9: no such file")
    with caplog.at_level(logging.WARNING, logger="gateway.engines.cuda"):
        assert cuda.preload_cuda(gpu) is True
    assert gpu.calls == [1]
    assert any("libcudnn.so.9" in r.getMessage() for r in caplog.records), caplog.records
    cpu, old = _fake_ort(None), _fake_ort("12.8", preload=False)
    assert cuda.preload_cuda(cpu) is False and cpu.calls == []  # a CPU build: nothing to load
    assert cuda.preload_cuda(old) is False  # an onnxruntime before preload_dlls (1.21)
