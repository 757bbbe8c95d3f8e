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


class UnknownFamily(ValueError):
    """A manifest names an engine family the gateway does not have."""


@dataclass(frozen=True)
class EngineFamily:
    settings: Callable[[Settings], FamilySettings]
    factory: Callable[[ModelSpec, Path, Settings], Engine[Any, Any]]


def _kokoro(spec: ModelSpec, folder: Path, settings: Settings) -> Engine[Any, Any]:
    from .kokoro import KokoroEngine

    k: KokoroSettings = settings.kokoro
    return KokoroEngine(spec.id, folder, k.default_lang, k.sentence_pause_s, k.max_unit_phonemes)


def _whisper(spec: ModelSpec, folder: Path, settings: Settings) -> Engine[Any, Any]:
    from .whisper import WhisperEngine

    w: WhisperSettings = settings.whisper
    return WhisperEngine(spec.id, folder, spec.multilingual, w.compute_type, w.gpu_compute_type)


FAMILIES: dict[str, EngineFamily] = {
    "kokoro": EngineFamily(settings=lambda s: s.kokoro, factory=_kokoro),
    "whisper": EngineFamily(settings=lambda s: s.whisper, factory=_whisper),
}


def family(name: str) -> EngineFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(
            f"unknown engine family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None
