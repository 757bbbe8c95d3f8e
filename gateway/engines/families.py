"""Engine families: one table from a manifest's `family` to the engine factory and its settings.

A third engine is one new module under `engines/` plus one entry here and its models in
`models/manifest.toml` (and a settings section in `config.Settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import KokoroSettings, Placement, Settings, WhisperSettings
from ..registry.manifest import ModelSpec
from .base import Engine


class FamilySettings(Protocol):
    """What the scheduler reads from a family's settings section."""

    placement: Placement
    gpu_budget_mib: int
    cpu_threads: int
    cpu_nice: int


Variants = dict[str, tuple[Path | None, str | None]]


class UnknownFamily(ValueError):
    """A manifest names an engine family the gateway does not have."""


@dataclass(frozen=True)
class EngineFamily:
    settings: Callable[[Settings], FamilySettings]
    # (spec, folder, settings, lane variants {lane: (file, why not)}) -> engine
    factory: Callable[[ModelSpec, Path, Settings, Variants], Engine[Any, Any]]
    # GPU dynamic batching: (most units per call, latency budget in seconds); (1, …): none
    batching: Callable[[Settings], tuple[int, float]] = lambda s: (1, 1.0)
    # Units one GPU instance runs at once (its runtime called from several threads); 1: one.
    gpu_concurrency: Callable[[Settings], int] = lambda s: 1
    # The GPU lane variant's precision setting (auto | fp16 | fp32; see engines/precision.py)
    gpu_precision: Callable[[Settings], str] = lambda s: "fp32"


def _kokoro(
    spec: ModelSpec, folder: Path, settings: Settings, variants: Variants
) -> Engine[Any, Any]:
    from .kokoro import GpuOptions, KokoroEngine

    k: KokoroSettings = settings.kokoro
    gpu_model, problem = variants.get("gpu", (None, "no GPU variant in the manifest"))
    threads = k.gpu_threads or min(4, settings.scheduler.cores)
    gpu = GpuOptions(gpu_model, problem, k.gpu_conv_algo_search, threads, k.gpu_stream_priority)
    # The CPU lane's timed file; without it (not pulled, a user's folder) the main model is used
    # as it is, and has timings only if it reports durations itself.
    cpu_model, _ = variants.get("cpu", (None, None))
    return KokoroEngine(
        spec.id, folder, k.default_lang, k.sentence_pause_s, k.max_unit_phonemes, gpu, cpu_model
    )


def _whisper(
    spec: ModelSpec, folder: Path, settings: Settings, variants: Variants
) -> Engine[Any, Any]:
    from .whisper import WhisperEngine

    w: WhisperSettings = settings.whisper
    gpu_compute_type = spec.gpu_compute_type or w.gpu_compute_type  # the model's own, if named
    return WhisperEngine(spec.id, folder, spec.multilingual, w.compute_type, gpu_compute_type)


FAMILIES: dict[str, EngineFamily] = {
    "kokoro": EngineFamily(
        settings=lambda s: s.kokoro,
        factory=_kokoro,
        gpu_concurrency=lambda s: s.kokoro.gpu_concurrency,
        gpu_precision=lambda s: s.kokoro.gpu_precision,
    ),
    "whisper": EngineFamily(
        settings=lambda s: s.whisper,
        factory=_whisper,
        batching=lambda s: (s.whisper.batch_size, s.whisper.batch_latency_s),
    ),
}


def family(name: str) -> EngineFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(
            f"unknown engine family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None
