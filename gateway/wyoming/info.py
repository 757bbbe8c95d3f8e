"""`describe` -> `info`: one ASR and one TTS program, from the catalog alone (Home Assistant waits
about a second for it, so no model is loaded and nothing is queued)."""

from __future__ import annotations

from typing import TypeVar

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from .. import __version__
from ..runtime import Runtime
from ..tasks import catalog

T = TypeVar("T", AsrModel, TtsVoice)
PROGRAM = "gateway"
ATTRIBUTION = Attribution(name="GPU-sharing audio gateway", url="")  # no public home yet
WHISPER = Attribution(name="OpenAI Whisper, SYSTRAN faster-whisper",
                      url="https://github.com/SYSTRAN/faster-whisper")  # fmt: skip
KOKORO = Attribution(name="hexgrad Kokoro, kokoro-onnx",
                     url="https://huggingface.co/hexgrad/Kokoro-82M")  # fmt: skip


def _artifacts(kind: type[T], entries: list[catalog.Entry], attribution: Attribution) -> list[T]:
    """Models or voices, each with its languages (Home Assistant filters by them)."""
    return [
        kind(
            name=e.name,
            attribution=attribution,
            installed=True,
            description=e.description,
            version=None,
            languages=e.languages,
        )
        for e in entries
    ]


def describe(gw: Runtime) -> Info:
    models = _artifacts(AsrModel, catalog.transcription_models(gw), WHISPER)
    voices = _artifacts(TtsVoice, catalog.voices(gw), KOKORO)
    asr = AsrProgram(
        name=PROGRAM,
        attribution=ATTRIBUTION,
        installed=True,
        description="Faster-Whisper speech-to-text, scheduled with the gateway's other work",
        version=__version__,
        models=models,
        supports_transcript_streaming=True,
    )
    tts = TtsProgram(
        name=PROGRAM,
        attribution=ATTRIBUTION,
        installed=True,
        description="Kokoro text-to-speech, scheduled with the gateway's other work",
        version=__version__,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(asr=[asr] if models else [], tts=[tts] if voices else [])
