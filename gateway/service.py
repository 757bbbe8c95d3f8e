"""Wiring: settings -> model store -> engines -> scheduler. Used by the HTTP app and the CLI."""

from __future__ import annotations

import logging
import threading
import zipfile
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from .config import Settings, csv
from .engines.kokoro import GpuOptions, KokoroEngine
from .engines.whisper import WhisperEngine
from .registry.manifest import ModelSpec, load_manifest
from .registry.store import ModelError, ModelStore
from .scheduler import (
    GpuCollector,
    GpuMonitor,
    ModelPolicy,
    NvmlMonitor,
    Scheduler,
    SchedulerMetrics,
)  # fmt: skip

log = logging.getLogger(__name__)

SPEECH_ALIASES = ("tts-1", "tts-1-hd")
TRANSCRIPTION_ALIASES = ("whisper-1",)


@dataclass
class ModelState:
    spec: ModelSpec
    engine: Any = None
    problems: list[str] = field(default_factory=list)
    verified: bool | None = None  # None: check still running


class Gateway:
    def __init__(
        self,
        settings: Settings | None = None,
        gpu: GpuMonitor | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.registry = registry or CollectorRegistry()
        self.specs = load_manifest(self.settings.models.manifest)
        self.store = ModelStore(
            self.settings.models.dir,
            self.specs,
            self.settings.models.local_paths,
            self.settings.models.allow_download,
        )
        self.gpu = gpu if gpu is not None else NvmlMonitor()
        self.models: dict[str, ModelState] = {}
        self._build_engines()
        self.metrics = SchedulerMetrics(self.registry)
        self.registry.register(GpuCollector(self.gpu.devices))
        self.scheduler = Scheduler(
            {m: s.engine for m, s in self.models.items() if s.engine is not None},
            {m: self._policy(s.spec) for m, s in self.models.items() if s.engine is not None},
            self.settings.scheduler,
            self.gpu,
            self.metrics,
        )
        self._verify_thread: threading.Thread | None = None
        self.diagnosis: list[dict[str, Any]] = []  # `gateway doctor` verdicts, set at start

    # -- models ---------------------------------------------------------------------------------

    def _build_engines(self) -> None:
        for model_id, spec in self.specs.items():
            state = ModelState(spec)
            self.models[model_id] = state
            status = self.store.status(model_id)
            if not status.present and spec.default:
                # The embedded bundle is local (installed packages): assembling it is no download.
                try:
                    self.store.pull(model_id, allow_download=self.settings.models.allow_download)
                    status = self.store.status(model_id)
                except ModelError as exc:
                    state.problems.append(str(exc))
            if not status.present:
                state.problems += status.problems or ["not present"]
                continue
            try:
                state.engine = self._engine(spec, status.path)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # corrupt files
                state.problems.append(f"cannot open model files: {exc}; run `gateway models "
                                      f"verify {model_id}`")  # fmt: skip
                log.error(
                    "cannot open model files; run `gateway models pull --force %s`",
                    model_id,
                    extra={"model": model_id, "error": str(exc)[:300]},
                )

    def _engine(self, spec: ModelSpec, folder: Any) -> Any:
        if spec.family == "kokoro":
            k = self.settings.kokoro
            gpu_model, problem = self.store.variant_path(spec.id, "gpu")
            gpu = GpuOptions(gpu_model, problem, k.gpu_conv_algo_search,
                             k.gpu_threads or min(4, self.settings.scheduler.cores))  # fmt: skip
            return KokoroEngine(
                spec.id, folder, k.default_lang, k.sentence_pause_s, k.max_unit_phonemes, gpu
            )
        w = self.settings.whisper
        return WhisperEngine(spec.id, folder, spec.multilingual, w.compute_type, w.gpu_compute_type)

    def _policy(self, spec: ModelSpec) -> ModelPolicy:
        family = self.settings.kokoro if spec.family == "kokoro" else self.settings.whisper
        return ModelPolicy(
            placement=family.placement,
            gpu_budget_mib=family.gpu_budget_mib,
            cpu_threads=self.settings.cpu_threads(spec.family),
            cpu_nice=family.cpu_nice,
            pinned=spec.id in csv(self.settings.models.pinned),
        )

    def verify_in_background(self) -> None:
        """Hash every present model once, so /ready can say whether the files are intact."""

        def run() -> None:
            for model_id, state in self.models.items():
                if state.engine is None:
                    continue
                problems = self.store.verify(model_id)
                if problems:
                    state.problems += problems
                    state.engine = None
                    log.error(
                        f"model files are corrupt; run `gateway models pull --force {model_id}`",
                        extra={"model": model_id, "problems": problems},
                    )
                state.verified = not problems

        self._verify_thread = threading.Thread(target=run, name="verify-models", daemon=True)
        self._verify_thread.start()

    def available(self, task: str) -> list[str]:
        return [m for m, s in self.models.items() if s.spec.task == task and s.engine is not None]

    def resolve(self, name: str, task: str) -> str:
        """Map a requested model name (alias or id) to an available model id, or raise KeyError."""
        if task == "speech" and name in (*SPEECH_ALIASES, "kokoro"):
            name = self.settings.models.speech_default if name != "kokoro" else "kokoro"
        elif task == "transcription" and name in TRANSCRIPTION_ALIASES:
            name = self.settings.models.transcription_default
        elif task == "transcription" and name in ("tiny.en", "base", "small"):
            name = f"whisper-{name}"
        state = self.models.get(name)
        if state is None or state.spec.task != task:
            raise KeyError(name)
        if state.engine is None:
            raise LookupError(name)
        return name

    def aliases(self, task: str) -> list[str]:
        return list(SPEECH_ALIASES) if task == "speech" else list(TRANSCRIPTION_ALIASES)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {}
        ok = not self.scheduler.closing
        for task, default in (
            ("speech", self.settings.models.speech_default),
            ("transcription", self.settings.models.transcription_default),
        ):
            state = self.models.get(default)
            good = state is not None and state.engine is not None and state.verified is True
            ok = ok and good
            detail[task] = {
                "model": default,
                "ready": good,
                "verified": None if state is None else state.verified,
                "problems": ["unknown model"] if state is None else state.problems,
            }  # fmt: skip
        if self.scheduler.closing:
            detail["shutting_down"] = True
        return ok, detail

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.verify_in_background()
        self.scheduler.start()
        log.info("GPU: %s", self.gpu.reason)
        for model, (ok, why) in self.scheduler.engine_gpu.items():
            log.info("engine placement", extra={"model": model, "gpu_usable": ok, "detail": why})
        for model_id, state in self.models.items():
            if state.problems and state.spec.default:
                log.warning(
                    "model unavailable: %s; run `gateway models pull %s`",
                    "; ".join(state.problems),
                    model_id,
                )
        preload = [m for m in csv(self.settings.models.preload) if m in self.scheduler.engines]
        if preload:
            await self.scheduler.preload(preload)

    async def stop(self) -> None:
        await self.scheduler.close(self.settings.server.shutdown_grace_s)
