"""One CUDA user space for both runtimes: which CUDA major each needs, and loading it from pip.

CTranslate2 4.x dlopens `libcublas.so.12` (CUDA 12). onnxruntime-gpu says which CUDA it was built
for in `onnxruntime.capi.build_and_package_info.cuda_version` (absent in a CPU build); installed
side by side with a CUDA 13 onnxruntime-gpu, one of the two runtimes cannot find its libraries.
The `gpu` extra pins a coherent CUDA 12 set (onnxruntime-gpu with its `cuda`/`cudnn` extras,
cuBLAS 12), whose libraries live in pip's `nvidia/*/lib` folders, outside the loader's search
path: `onnxruntime.preload_dlls()` loads them once, before either runtime opens them, and both
then find them by soname (the loader matches an already loaded library by its soname).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import io
import logging
from typing import Any

log = logging.getLogger(__name__)


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        raw = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(p) for p in raw.split(".")[:2] if p.isdigit())


def _build_info() -> Any:
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return build_and_package_info


def ort_cuda_version(info: Any = None) -> str | None:
    """The CUDA version the installed onnxruntime was built for, as the build records it
    (e.g. "12.8"); None for a CPU build or no onnxruntime."""
    info = info if info is not None else _build_info()
    version = getattr(info, "cuda_version", None)
    return str(version) if version else None


def _major(version: str | None) -> int | None:
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() else None


def ct2_cuda_major(version: tuple[int, ...] | None) -> int | None:
    """CTranslate2 records no CUDA version at run time: its releases' CUDA majors (4.x: 12)."""
    if version is None:
        return None
    return 12 if version[0] == 4 else 11 if version[0] < 4 else None


def mismatch(ort_cuda: str | None, ct2: tuple[int, ...] | None) -> str | None:
    """A sentence naming the CUDA major mismatch between the two runtimes, with the fix."""
    a, b = _major(ort_cuda), ct2_cuda_major(ct2)
    if a is None or b is None or a == b:
        return None
    return (
        f"onnxruntime-gpu is built for CUDA {ort_cuda} but ctranslate2 "
        f"{'.'.join(map(str, ct2 or ()))} needs CUDA {b} (libcublas.so.{b}): one of them "
        "cannot load its libraries. Fix: pip install 'gateway[gpu]' (its onnxruntime-gpu pin "
        "is a CUDA 12 build), or use docker/Dockerfile.cuda"
    )


def installed_mismatch() -> str | None:
    return mismatch(ort_cuda_version(), _version("ctranslate2"))


def preload_cuda(ort: Any = None) -> bool:
    """Load the CUDA and cuDNN libraries of pip's nvidia-* packages (the `gpu` extra) with
    `onnxruntime.preload_dlls()`, so that ONNX Runtime and CTranslate2 both find them. False
    when there is nothing to load: a CPU build (no CUDA version), or an onnxruntime without
    `preload_dlls` (before 1.21). What it prints about libraries it could not load is logged."""
    module = ort if ort is not None else importlib.import_module("onnxruntime")
    preload = getattr(module, "preload_dlls", None)
    info = getattr(getattr(module, "capi", None), "build_and_package_info", None)
    cuda = ort_cuda_version(info)
    if preload is None or cuda is None:
        return False
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except (OSError, RuntimeError) as exc:  # e.g. a directory it expects is missing
        log.warning("onnxruntime.preload_dlls failed: %s", exc)
        return False
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.warning("onnxruntime.preload_dlls: %s", line.strip())
    log.info("CUDA libraries preloaded by onnxruntime", extra={"cuda": cuda})
    return True


def high_priority_stream(device: int) -> int | None:
    """A CUDA stream with the device's highest priority, for a runtime that accepts a stream
    (ONNX Runtime's `user_compute_stream`): the GPU's block scheduler then runs its kernels
    ahead of queued kernels of normal-priority streams (Whisper's). None when it cannot."""
    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            rt = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None
    least, greatest = ctypes.c_int(), ctypes.c_int()
    stream = ctypes.c_void_p()
    if (
        rt.cudaSetDevice(device) != 0
        or rt.cudaDeviceGetStreamPriorityRange(ctypes.byref(least), ctypes.byref(greatest))
        or rt.cudaStreamCreateWithPriority(ctypes.byref(stream), 1, greatest.value)
    ):
        return None
    log.info("high-priority CUDA stream", extra={"priority": greatest.value})
    return stream.value
