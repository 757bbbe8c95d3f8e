"""The engines' settings sections, `kokoro` (speech) and `whisper` (transcription): where each may
run, its GPU budget and threads, and how it splits and decodes its work."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..text.languages import LANGUAGE_NAMES
from .lists import StrList


class Placement(str, Enum):
    """Where an engine may run: ``auto`` prefers the GPU when it is usable and admitted."""

    auto = "auto"
    gpu = "gpu"
    cpu = "cpu"


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
    # An assignment of the comma form (`= "a,b"`, as tests and tools do) is decoded like the
    # environment, so a list setting never holds a bare string.
    model_config = ConfigDict(validate_assignment=True)

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
    languages: StrList = Field(
        default_factory=list,
        description="Candidate languages, comma-separated (`en,de`): detection picks the most "
        "probable of these; one code pins it. Empty: any language Whisper knows.",
    )
    keywords: StrList = Field(
        default_factory=list,
        description="Terms Whisper is biased toward (faster-whisper's `hotwords`), comma-"
        "separated: a home's device and room names. Every request gets them, Wyoming's "
        "included; a request's own `keywords` are added to them.",
    )
    language_threshold: float = Field(
        0.97, ge=0, le=1, description="Detection below this probability uses `language`."
    )
    language_segments: int = Field(
        3, ge=1, le=10, description="30 s segments of a long file detection may hear."
    )

    @model_validator(mode="after")
    def _languages(self) -> WhisperSettings:
        for code in [self.language, *self.languages]:
            if code and code not in LANGUAGE_NAMES:
                raise ValueError(f"unknown language {code!r}: use a code Whisper knows")
        if any(c in k for k in self.keywords for c in "<>\r\n"):
            raise ValueError("whisper.keywords are single-line terms without `<` or `>`")
        return self
