"""The runtime: settings -> model store -> engines -> scheduler, started and stopped as one.

It opens no listener: `gateway serve` composes it with the HTTP app and the Wyoming listener
(gateway/server.py); `gateway speak` and `gateway transcribe` call tasks/ on it directly."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from .audio.budget import AudioBudget
from .config import Settings
from .doctor import Verdict, diagnose, log_verdicts
from .engines.base import Engine
from .engines.cuda import preload_cuda
from .engines.families import UnknownFamily, family
from .engines.precision import gpu_precision
from .errors import ModelUnavailable, UnknownModel
from .registry.manifest import ModelSpec, load_manifest
from .registry.store import ModelError, ModelStore
from .scheduler import (
    GpuCollector,
    GpuMonitor,
    ModelPolicy,
    NvmlMonitor,
    Scheduler,
    SchedulerMetrics,
    parse_keep_alive,
)
from .traffic import Traffic

log = logging.getLogger(__name__)

# OpenAI's model names, per task: alias -> model id (None: the task's configured default). The
# gpt-4o ones are what current OpenAI clients send by default.
ALIASES: dict[str, dict[str, str | None]] = {
    "speech": {"tts-1": None, "tts-1-hd": None, "gpt-4o-mini-tts": None, "kokoro": "kokoro"},
    "transcription": {
        "whisper-1": None,
        "gpt-4o-transcribe": None,
        "gpt-4o-mini-transcribe": None,
        "gpt-transcribe": None,
        "gpt-live-transcribe": None,  # also asks a Realtime session for live mode
        "tiny.en": "whisper-tiny.en",
        "base": "whisper-base",
        "small": "whisper-small",
        "large-v3-turbo": "whisper-large-v3-turbo",
        "turbo": "whisper-large-v3-turbo",
        "distil-large-v3": "whisper-distil-large-v3",
    },
}
LISTED_ALIASES = {
    "speech": ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"],
    "transcription": ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                      "gpt-transcribe", "gpt-live-transcribe"],
}
# OpenAI's dated snapshots (`gpt-4o-mini-transcribe-2025-12-15`) name the alias before the date:
# a rule, so a snapshot published later needs no release of the gateway.
DATED = re.compile(r"^(?P<alias>.+)-\d{4}-\d{2}-\d{2}$")


def undated(name: str, task: str) -> str:
    """An OpenAI alias without its snapshot date (`gpt-4o-transcribe-2025-03-20` ->
    `gpt-4o-transcribe`); any other name as it is."""
    m = DATED.match(name)
    alias = m.group("alias") if m else None
    return alias if alias is not None and alias in ALIASES.get(task, {}) else name


@dataclass
class ModelState:
    spec: ModelSpec
    engine: Engine[Any, Any] | None = None
    problems: list[str] = field(default_factory=list)
    verified: bool | None = None  # None: check still running


def _store(settings: Settings, specs: dict[str, ModelSpec]) -> ModelStore:
    m = settings.models
    return ModelStore(m.dir, specs, m.local_paths, m.allow_download)


def assemble_defaults(settings: Settings) -> dict[str, str]:
    """Assemble missing default models from their local sources (the embedded bundle is installed
    packages: no download). Run at server start-up, never by `gateway doctor`. Returns the
    problems per model that could not be assembled."""
    specs = load_manifest(settings.models.manifest)
    store = _store(settings, specs)
    problems: dict[str, str] = {}
    for model_id, spec in specs.items():
        if spec.default and not store.status(model_id).present:
            try:
                store.pull(model_id, allow_download=settings.models.allow_download)
            except ModelError as exc:
                problems[model_id] = str(exc)
    return problems


class Runtime:
    """What every front door shares: the model states, the scheduler, the metrics registry."""

    def __init__(
        self,
        settings: Settings | None = None,
        gpu: GpuMonitor | None = None,
        metrics_registry: CollectorRegistry | None = None,
        pull_problems: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.metrics_registry = metrics_registry or CollectorRegistry()  # Prometheus
        self.specs = load_manifest(self.settings.models.manifest)
        self.store = _store(self.settings, self.specs)  # the model files
        self.gpu = gpu if gpu is not None else NvmlMonitor()
        self.models: dict[str, ModelState] = {}
        # per model with variants of several precisions: the one its GPU lane loads
        self.gpu_precision: dict[str, str] = {}
        if self.gpu.devices():
            preload_cuda()  # the `gpu` extra's CUDA libraries, before a runtime opens them
        self._build_engines(pull_problems or {})
        self.metrics = SchedulerMetrics(self.metrics_registry)
        self.traffic = Traffic(self.metrics_registry)  # requests per front door
        self.metrics_registry.register(GpuCollector(self.gpu.devices))
        usable = {m: s for m, s in self.models.items() if s.engine is not None}
        self.scheduler = Scheduler(
            {m: s.engine for m, s in usable.items() if s.engine is not None},
            {m: self._policy(s.spec) for m, s in usable.items()},
            self.settings.scheduler,
            self.gpu,
            self.metrics,
        )
        # decoded uploads held at once, across requests (bounded by `max_queued_audio_s`)
        self.audio_budget = AudioBudget(self.settings.server.max_queued_audio_s)
        self._verify_thread: threading.Thread | None = None
        self.verification: asyncio.Future[None] | None = None  # set by verify_in_background
        self.diagnosis: list[Verdict] = []  # `gateway doctor` verdicts, set at start

    # -- models ---------------------------------------------------------------------------------

    def _build_engines(self, pull_problems: dict[str, str]) -> None:
        for model_id, spec in self.specs.items():
            state = ModelState(spec)
            self.models[model_id] = state
            if model_id in pull_problems:
                state.problems.append(pull_problems[model_id])
            status = self.store.status(model_id)
            if not status.present:
                state.problems += status.problems or ["not present"]
                continue
            try:
                state.engine = self._engine(spec, status.path)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # corrupt files
                if isinstance(exc, UnknownFamily):
                    raise
                state.problems.append(
                    f"cannot open model files: {exc}; run `gateway models verify {model_id}`"
                )
                log.error(
                    "cannot open model files; run `gateway models pull --force %s`",
                    model_id,
                    extra={"model": model_id, "error": str(exc)[:300]},
                )

    def _engine(self, spec: ModelSpec, folder: Path) -> Engine[Any, Any]:
        precision = self._gpu_precision(spec)
        variants: dict[str, tuple[Path | None, str | None]] = {
            v.lane: self.store.variant_path(spec.id, v.lane, precision if v.lane == "gpu" else None)
            for v in spec.variants
        }
        return family(spec.family).factory(spec, folder, self.settings, variants)

    def _gpu_precision(self, spec: ModelSpec) -> str | None:
        """The GPU lane's variant precision for a model that has an fp16 one: as set, or by the
        card (`auto`); `auto` takes the float one where the fp16 file is not made."""
        if not any(v.lane == "gpu" and v.precision == "fp16" for v in spec.variants):
            return None
        setting = family(spec.family).gpu_precision(self.settings)
        device = self.gpu.device(self.settings.scheduler.gpu_device)
        precision: str = gpu_precision(setting, device.compute_capability if device else None)
        if precision == "fp16" and setting == "auto":
            path, problem = self.store.variant_path(spec.id, "gpu", "fp16")
            if path is None:
                log.warning("no fp16 GPU variant; the GPU lane loads the float one",
                            extra={"model": spec.id, "problem": problem})  # fmt: skip
                precision = "fp32"
        self.gpu_precision[spec.id] = precision
        return precision

    def _policy(self, spec: ModelSpec) -> ModelPolicy:
        section = family(spec.family).settings(self.settings)
        max_batch, batch_latency_s = family(spec.family).batching(self.settings)
        return ModelPolicy(
            placement=section.placement,
            gpu_budget_mib=spec.gpu_budget_mib or section.gpu_budget_mib,
            cpu_threads=self.settings.cpu_threads(spec.family),
            cpu_nice=section.cpu_nice,
            pinned=spec.id in self.settings.models.pinned,
            max_batch=max_batch,
            batch_latency_s=batch_latency_s,
            gpu_concurrency=family(spec.family).gpu_concurrency(self.settings),
            keep_alive_s=self._keep_alive(spec.id),
        )

    def _keep_alive(self, model_id: str) -> float | None:
        value = self.settings.models.keep_alive.get(model_id)
        if value is None:
            return None
        try:
            return parse_keep_alive(value)
        except ValueError as exc:
            raise ValueError(f"GATEWAY_MODELS__KEEP_ALIVE for {model_id}: {exc}") from None

    def verify_in_background(self) -> None:
        """Hash every present model once, off the event loop, so /ready can say whether the
        files are intact. A GPU lane file is not used until its hash passes (the GPU lane would
        otherwise load a file that may turn out corrupt). The results are applied on the event
        loop, where placement and model state change; `verification` completes after the last."""
        loop = asyncio.get_running_loop()
        todo = [m for m, s in self.models.items() if s.engine is not None]
        for model_id in todo:
            if any(v.lane == "gpu" for v in self.models[model_id].spec.variants):
                self.scheduler.hold_gpu_variant(model_id)
        done: asyncio.Future[None] = loop.create_future()
        self.verification = done

        def post(*call: Any) -> bool:
            try:
                loop.call_soon_threadsafe(*call)
                return True
            except RuntimeError:  # the loop closed first (the server stopped): nothing to apply
                return False

        def run() -> None:
            for model_id in todo:
                precision = self.gpu_precision.get(model_id)
                result = (
                    self.store.verify(model_id),
                    self.store.verify_variants(model_id, precision),
                )
                if not post(self._verified, model_id, *result):
                    return
            post(done.set_result, None)

        self._verify_thread = threading.Thread(target=run, name="verify-models", daemon=True)
        self._verify_thread.start()

    def _verified(
        self, model_id: str, problems: list[str], variants: dict[str, str | None]
    ) -> None:
        state = self.models[model_id]
        # A CPU lane file (the timed model) that is there but hashes wrong is as corrupt as the
        # main files: the CPU lane loads it. One that is missing was never used (main file).
        cpu = variants.get("cpu")
        if cpu and self.store.variant_path(model_id, "cpu")[0] is not None:
            problems = [*problems, cpu]
        if problems:
            state.problems += problems
            state.engine = None
            log.error(
                f"model files are corrupt; run `gateway models pull --force {model_id}`",
                extra={"model": model_id, "problems": problems},
            )
        state.verified = not problems
        problem = variants.get("gpu")
        if problem and state.engine is not None:
            self.scheduler.refuse_gpu_variant(model_id, problem)
        else:
            self.scheduler.pass_gpu_variant(model_id)

    def available(self, task: str) -> list[str]:
        return [m for m, s in self.models.items() if s.spec.task == task and s.engine is not None]

    def resolve(self, name: str, task: str) -> str:
        """Map a requested model name (alias or id) to an available model id; raises
        UnknownModel (no such model) or ModelUnavailable (not usable here)."""
        aliases = ALIASES.get(task, {})
        model_id = undated(name, task)
        if model_id in aliases:
            model_id = aliases[model_id] or self.default_model(task)
        state = self.models.get(model_id)
        if state is None or state.spec.task != task:
            raise UnknownModel(name, task, self.aliases(task) + self.available(task))
        if state.engine is None:
            raise ModelUnavailable(name, task)
        return model_id

    def default_model(self, task: str) -> str:
        m = self.settings.models
        return m.speech_default if task == "speech" else m.transcription_default

    def aliases(self, task: str) -> list[str]:
        return list(LISTED_ALIASES.get(task, []))

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
            }
        if self.scheduler.closing:
            detail["shutting_down"] = True
        return ok, detail

    # -- lifecycle ------------------------------------------------------------------------------

    def diagnose(self) -> list[Verdict]:
        """`gateway doctor`'s verdicts for this gateway's GPU, runtimes and models."""
        return diagnose(self.settings, self.gpu, self.models, self.scheduler.snapshot())

    async def start(self) -> None:
        self.diagnosis = self.diagnose()
        log_verdicts(self.diagnosis)
        self.verify_in_background()
        self.scheduler.start()
        log.info("GPU: %s", self.gpu.reason)
        scheduled = self.scheduler.snapshot().models
        for model, facts in scheduled.items():
            log.info(
                "engine placement",
                extra={"model": model, "gpu_usable": facts.gpu_usable, "detail": facts.gpu_detail},
            )
        for model_id, state in self.models.items():
            if state.problems and state.spec.default:
                log.warning(
                    "model unavailable: %s; run `gateway models pull %s`",
                    "; ".join(state.problems),
                    model_id,
                )
        preload = [m for m in self.settings.models.preload if m in scheduled]
        if preload:
            await self.scheduler.preload(preload)

    async def stop(self) -> None:
        await self.scheduler.close(self.settings.server.shutdown_grace_s)
