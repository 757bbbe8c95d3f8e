"""What the gateway can do, for front doors that describe themselves (Wyoming's `info`): the
transcription models with the languages each transcribes, and the voices with the languages each
speaks. Read from the loaded catalog only: no model is loaded and nothing is queued."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.kokoro import OPENAI_VOICES, KokoroEngine
from ..engines.whisper import LANGUAGES
from ..errors import ModelLookupError
from ..runtime import Runtime
from ..text.text import VOICE_LANG, complete_sentences


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    languages: list[str]


def transcription_models(gw: Runtime) -> list[Entry]:
    """Available transcription models, the default first; an English-only model lists `en`."""
    default = gw.default_model("transcription")
    ids = sorted(gw.available("transcription"), key=lambda m: (m != default, m))
    out = []
    for model_id in ids:
        spec = gw.models[model_id].spec
        langs = sorted(LANGUAGES) if spec.multilingual else ["en"]
        out.append(Entry(model_id, spec.description, langs))
    return out


def _voice_languages(voice_id: str) -> list[str]:
    """Languages as two-letter codes; every voice also reads Latin-script text as English (the
    phonemizer follows the text), so the Japanese voices list `ja` and `en`."""
    lang = VOICE_LANG.get(voice_id[:1], "en").split("-")[0]
    lang = "zh" if lang == "cmn" else lang
    return [lang] if lang == "en" else [lang, "en"]


def voices(gw: Runtime) -> list[Entry]:
    """The default speech model's installed voices, then the OpenAI names mapped onto them."""
    try:
        model_id = gw.resolve("tts-1", "speech")
    except ModelLookupError:  # no speech model here: no voices to describe
        return []
    engine = gw.models[model_id].engine
    if not isinstance(engine, KokoroEngine):
        return []
    out = [Entry(v, f"Kokoro voice {v}", _voice_languages(v)) for v in engine.voice_ids()]
    for name in OPENAI_VOICES:
        if name not in engine.voices:
            target = engine.openai_voice(name)
            out.append(Entry(name, f"OpenAI name for {target}", _voice_languages(target)))
    return out


def sentences_so_far(text: str) -> tuple[str, str]:
    """Text streamed in pieces: (the complete sentences so far, the unfinished rest)."""
    return complete_sentences(text)
