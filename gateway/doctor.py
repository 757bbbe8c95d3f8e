"""`gateway doctor`: why each engine runs where it runs, and what to fix, in plain words.

It checks by hand what a troubleshooting table would: the NVIDIA driver through NVML, the CUDA
libraries each runtime loads, whether ONNX Runtime's CUDA provider library really loads (and
whether the CPU build shadows the GPU build), CTranslate2's CUDA device count, the visible GPUs
(MIG too), the temp dir the phonemizer needs, and the model files.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .config import Settings
from .engines.cuda import installed_mismatch
from .scheduler import GpuMonitor, Snapshot


class ModelView(Protocol):
    @property
    def engine(self) -> Any: ...
    @property
    def spec(self) -> Any: ...
    @property
    def problems(self) -> list[str]: ...


log = logging.getLogger(__name__)

Verdict = dict[str, Any]


def _verdict(check: str, ok: bool | None, detail: str, fix: str = "") -> Verdict:
    return {"check": check, "ok": ok, "detail": detail, "fix": fix}


def _dist(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _loads(lib: str) -> str | None:
    """None if the shared library loads, else the loader's error."""
    try:
        ctypes.CDLL(lib)
        return None
    except OSError as exc:
        return str(exc)


def _ort_checks() -> list[Verdict]:
    out = []
    cpu, gpu = _dist("onnxruntime"), _dist("onnxruntime-gpu")
    if cpu and gpu:
        out.append(
            _verdict(
                "onnxruntime build",
                False,
                f"both onnxruntime {cpu} (CPU) and onnxruntime-gpu {gpu} are installed; they share "
                "one module and the CPU build can silently win",
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu",
            )
        )
    elif gpu:
        out.append(_verdict("onnxruntime build", True, f"onnxruntime-gpu {gpu} alone"))
    else:
        out.append(
            _verdict(
                "onnxruntime build",
                None,
                f"onnxruntime {cpu} (CPU build): Kokoro runs on the CPU",
                "for the GPU, install onnxruntime-gpu alone (the CUDA image does)",
            )
        )
    try:
        import onnxruntime as ort

        capi = Path(ort.__file__).parent / "capi"
        lib = capi / "libonnxruntime_providers_cuda.so"
        if lib.exists():
            shared = capi / "libonnxruntime_providers_shared.so"
            if shared.exists():
                ctypes.CDLL(str(shared), mode=ctypes.RTLD_GLOBAL)
            err = _loads(str(lib))
            out.append(
                _verdict(
                    "onnxruntime CUDA provider",
                    err is None,
                    "libonnxruntime_providers_cuda.so loads"
                    if err is None
                    else f"does not load: {err}",
                    ""
                    if err is None
                    else "install the CUDA and cuDNN libraries this onnxruntime-gpu "
                    "was built for (see docs/deploy.md)",
                )
            )
    except Exception as exc:  # a broken install must not break diagnosis
        out.append(_verdict("onnxruntime CUDA provider", False, f"cannot inspect: {exc}"))
    return out


def _ct2_checks(has_gpu: bool) -> list[Verdict]:
    try:
        import ctranslate2

        count = ctranslate2.get_cuda_device_count()
        ok = count > 0
        detail = f"ctranslate2 {ctranslate2.__version__} sees {count} CUDA device(s)"
    except Exception as exc:
        ok, detail = False, f"ctranslate2 CUDA query failed: {exc}"
    libs = {name: _loads(name) for name in ("libcublas.so.12", "libcudnn.so.9")}
    missing = [n for n, e in libs.items() if e]
    verdict: bool | None = ok and not missing
    if not has_gpu:
        verdict = None  # no GPU at all: the CPU is the expected place, not a failure
    return [
        _verdict(
            "ctranslate2 CUDA",
            verdict,
            detail + (f"; cannot load {', '.join(missing)}" if missing else ""),
            ""
            if ok and not missing
            else "CTranslate2 4.x needs CUDA 12 cuBLAS and cuDNN 9 on the library path",
        ),
    ]


def diagnose(
    settings: Settings, gpu: GpuMonitor, models: Mapping[str, ModelView], snap: Snapshot
) -> list[Verdict]:
    """Verdicts on the GPU, the runtimes and each model (where it runs: the scheduler's
    snapshot). Diagnosis reads; it never changes the scheduler."""
    out: list[Verdict] = []
    devices = gpu.devices()
    out.append(
        _verdict(
            "NVIDIA driver (NVML)",
            bool(devices) or None,
            gpu.reason,
            ""
            if devices
            else "no GPU: everything runs on the CPU (that is fine); for "
            "the GPU install the driver and the container toolkit",
        )
    )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    for d in devices:
        out.append(
            _verdict(
                f"GPU {d.index}",
                True,
                f"{d.name}, {d.total_mib} MiB total, {d.free_mib} MiB free"
                + (", MIG enabled: each MIG instance is placed as its own device" if d.mig else "")
                + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""),
            )
        )
    if devices and settings.scheduler.gpu_device >= len(devices):
        out.append(
            _verdict(
                "GPU index",
                False,
                f"GATEWAY_SCHEDULER__GPU_DEVICE={settings.scheduler.gpu_device} "
                f"but {len(devices)} GPU(s) are visible",
                "set it to 0",
            )
        )
    out += _ort_checks()
    mismatch = installed_mismatch()
    if mismatch:
        out.append(
            _verdict(
                "CUDA versions", False, mismatch.split(" Fix: ")[0], mismatch.split(" Fix: ")[-1]
            )
        )
    out += _ct2_checks(bool(devices))
    tmp = tempfile.gettempdir()
    writable = os.access(tmp, os.W_OK)
    out.append(
        _verdict(
            "temp dir",
            writable,
            f"{tmp} {'is' if writable else 'is not'} writable",
            ""
            if writable
            else "mount a writable emptyDir at /tmp: the phonemizer copies espeak-ng there",
        )
    )
    for model_id, state in models.items():
        if state.engine is None and not state.spec.default:
            continue
        placement = where(snap, model_id) if state.engine is not None else "unavailable"
        out.append(
            _verdict(
                f"model {model_id}",
                state.engine is not None,
                f"runs on: {placement}" if state.engine is not None else "; ".join(state.problems),
                "" if state.engine is not None else f"gateway models pull {model_id}",
            )
        )
    return out


def where(snap: Snapshot, model_id: str) -> str:
    """Where a model runs and which file each lane loads, in words."""
    facts = snap.models.get(model_id)
    return "unavailable" if facts is None else facts.where


def log_verdicts(verdicts: list[Verdict]) -> None:
    for v in verdicts:
        level = logging.WARNING if v["ok"] is False else logging.INFO
        log.log(
            level,
            "doctor: %s: %s",
            v["check"],
            v["detail"],
            extra={"fix": v["fix"]} if v["fix"] else {},
        )


def render(verdicts: list[Verdict]) -> str:
    marks = {True: "ok  ", False: "FAIL", None: "info"}
    lines = []
    for v in verdicts:
        lines.append(f"[{marks[v['ok']]}] {v['check']}: {v['detail']}")
        if v["fix"] and v["ok"] is not True:
            lines.append(f"       fix: {v['fix']}")
    return "\n".join(lines)
