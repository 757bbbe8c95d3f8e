"""One CUDA user space for both runtimes: which CUDA major each needs, and loading it from pip.

CTranslate2 4.x dlopens `libcublas.so.12` (CUDA 12). onnxruntime-gpu 1.26.0 is the last build
for CUDA 12; 1.27 and later link the CUDA 13 sonames. Installed side by side with a CUDA 13
onnxruntime-gpu, one of the two runtimes cannot find its libraries. The `gpu` extra pins a
coherent CUDA 12 set (onnxruntime-gpu 1.26.0 with its `cuda`/`cudnn` extras, cuBLAS 12), whose
libraries live in pip's `nvidia/*/lib` folders, outside the loader's search path: they are
loaded here once, globally, before either runtime opens them, so both find them by soname.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

LAST_CUDA12_ORT = (1, 26)
# Load order matters: each library's own CUDA dependencies first.
CUDA12_LIBS = (
    "libcudart.so.12",
    "libcublasLt.so.12",
    "libcublas.so.12",
    "libcufft.so.11",
    "libcurand.so.10",
    "libnvrtc.so.12",
    "libcudnn.so.9",
)


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        raw = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(p) for p in raw.split(".")[:2] if p.isdigit())


def ort_cuda_major(version: tuple[int, ...] | None) -> int | None:
    """The CUDA major an onnxruntime-gpu release is built for (None: not installed)."""
    if version is None:
        return None
    return 12 if version[:2] <= LAST_CUDA12_ORT else 13


def ct2_cuda_major(version: tuple[int, ...] | None) -> int | None:
    if version is None:
        return None
    return 12 if version[0] == 4 else 11 if version[0] < 4 else None


def mismatch(ort: tuple[int, ...] | None, ct2: tuple[int, ...] | None) -> str | None:
    """A sentence naming the CUDA major mismatch between the two runtimes, with the fix."""
    a, b = ort_cuda_major(ort), ct2_cuda_major(ct2)
    if a is None or b is None or a == b:
        return None
    ort_s = ".".join(map(str, ort or ()))
    return (
        f"onnxruntime-gpu {ort_s} is built for CUDA {a} but ctranslate2 "
        f"{'.'.join(map(str, ct2 or ()))} needs CUDA {b} (libcublas.so.{b}): one of them "
        f"cannot load its libraries. Fix: pip install 'gateway[gpu]' (onnxruntime-gpu "
        f"{LAST_CUDA12_ORT[0]}.{LAST_CUDA12_ORT[1]}.0, the last CUDA 12 build), or use "
        "docker/Dockerfile.cuda"
    )


def installed_mismatch() -> str | None:
    return mismatch(_version("onnxruntime-gpu"), _version("ctranslate2"))


def _pip_nvidia_dirs() -> list[Path]:
    dirs = []
    for entry in sys.path:
        root = Path(entry) / "nvidia"
        if root.is_dir():
            dirs += sorted(p for p in root.glob("*/lib") if p.is_dir())
    return dirs


def preload_pip_cuda() -> list[str]:
    """Load the CUDA 12 libraries that pip's nvidia-* packages ship (the `gpu` extra), globally,
    so that ONNX Runtime and CTranslate2 both find them. Returns the paths loaded; loads nothing
    when no such package is installed (a system CUDA, or no GPU)."""
    loaded = []
    dirs = _pip_nvidia_dirs()
    for soname in CUDA12_LIBS:
        for folder in dirs:
            path = folder / soname
            if path.is_file():
                try:
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                    loaded.append(str(path))
                except OSError as exc:
                    log.warning("cannot load %s: %s", path, exc)
                break
    if loaded:
        log.info("CUDA libraries from pip loaded", extra={"count": len(loaded)})
    return loaded


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
