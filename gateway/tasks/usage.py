"""`usage` of a streamed transcription's `transcript.text.done` event, in OpenAI's shape:
`{"type": "tokens", "input_tokens", "input_token_details": {"audio_tokens", "text_tokens"},
"output_tokens", "total_tokens"}` (the openai SDK's `TranscriptionTextDoneEvent.Usage`).

A Whisper-named request (`whisper-1`, or a model id) is metered as OpenAI meters whisper-1:
`{"type": "duration", "seconds"}` on its json and verbose_json responses (`duration_usage`).

`output_tokens` counts the transcript in the model's own tokenizer (the `tokenizer.json` Whisper
writes with; about four characters a token where a model folder has none), and `text_tokens` the
prompt in it. `audio_tokens` is the audio at 10 tokens a second: a stable figure for a client to
meter, not a count (Whisper has no audio tokens of its own; its encoder reads 50 frames a second,
padded to 30-second windows).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..engines.whisper import WhisperEngine
from ..runtime import Runtime, undated

AUDIO_TOKENS_PER_S = 10
_CHARS_PER_TOKEN = 4


@functools.lru_cache(maxsize=4)
def _tokenizer(path: Path) -> Tokenizer | None:
    return Tokenizer.from_file(str(path)) if path.is_file() else None


def text_tokens(gw: Runtime, model: str, text: str) -> int:
    """Tokens of `text` for transcription `model` (loads its tokenizer once: call off the loop)."""
    if not text:
        return 0
    engine = gw.models[model].engine
    folder = engine.folder if isinstance(engine, WhisperEngine) else None
    tokenizer = _tokenizer(folder / "tokenizer.json") if folder else None
    if tokenizer is None:
        return math.ceil(len(text) / _CHARS_PER_TOKEN)
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def transcription_usage(
    gw: Runtime, model: str, duration_s: float, prompt: str | None, text: str
) -> dict[str, Any]:
    audio = math.ceil(duration_s * AUDIO_TOKENS_PER_S)
    prompt_tokens = text_tokens(gw, model, prompt or "")
    output = text_tokens(gw, model, text)
    return {
        "type": "tokens",
        "input_tokens": audio + prompt_tokens,
        "input_token_details": {"audio_tokens": audio, "text_tokens": prompt_tokens},
        "output_tokens": output,
        "total_tokens": audio + prompt_tokens + output,
    }


def duration_usage(model_name: str, duration_s: float) -> dict[str, Any] | None:
    """`usage` of a json / verbose_json response: the audio's seconds for any name but OpenAI's
    token-billed `gpt-*` ones (their usage is the streamed done event's, as before)."""
    if undated(model_name, "transcription").startswith("gpt-"):
        return None
    return {"type": "duration", "seconds": round(duration_s, 3)}
