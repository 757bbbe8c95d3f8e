"""The 2026 OpenAI transcription fields, checked in one place for every front door (the HTTP form,
a Realtime session's transcription config, Wyoming through the deployment's settings):
`languages[]`, `keywords[]`, `include[]`, `chunking_strategy`, and the model names that ask
for live transcription. docs/transcription-options.md says what each does on Whisper.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import WhisperSettings
from ..engines.vad import VadTuning
from ..engines.whisper import LANGUAGES
from ..errors import InvalidRequest
from ..runtime import undated

# OpenAI publishes no limits for `keywords` beyond "single-line, no `<` or `>`"; these keep
# the terms inside the half of Whisper's 448-token context that faster-whisper gives its prompt
# (223 tokens, cut silently past that): about four characters a token, so 600 characters of
# terms, the deployment's and the request's together, leave room for a `prompt` as well.
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 64
MAX_KEYWORDS_TOTAL_CHARS = 600
LIVE_MODEL = "gpt-live-transcribe"
LOGPROBS = "logprobs"  # the HTTP `include[]` value
REALTIME_LOGPROBS = "item.input_audio_transcription.logprobs"  # a Realtime session's


@dataclass(frozen=True)
class Extras:
    """What the new fields add to a plan (their defaults: a request that sends none)."""

    candidates: tuple[str, ...] = ()  # the request's `languages[]`; empty: the deployment's
    keywords: str | None = None  # faster-whisper's `hotwords`: the deployment's and the request's
    logprobs: bool = False
    vad: VadTuning | None = None  # `chunking_strategy: server_vad`; None: the gateway's own


def live_requested(model_name: str) -> bool:
    """Whether a model name asks for live transcription (`gpt-live-transcribe`, dated or not)."""
    return undated(model_name, "transcription") == LIVE_MODEL


def _strings(value: Any, param: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidRequest(f"{param} must be an array of strings", param, "invalid_type")
    if not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{param} must be an array of strings", param, "invalid_type")
    return list(value)


def languages(
    value: Any, language: str | None, multilingual: bool, model: str, param: str = "languages"
) -> tuple[str, ...]:
    """The request's candidate languages; a 400 with `language`, or for a code Whisper lacks."""
    if value is None:
        return ()
    codes = [c.strip().lower() for c in _strings(value, param)]
    if not codes:
        return ()
    if language is not None:
        raise InvalidRequest(
            "send either `language` or `languages`, not both", param, "invalid_parameter"
        )
    for code in codes:
        if code not in LANGUAGES:
            raise InvalidRequest(
                f"unsupported language {code!r} in {param}; use ISO-639-1 codes",
                param,
                "invalid_language",
            )
        if code != "en" and not multilingual:
            raise InvalidRequest(f"model {model!r} is English-only", param, "invalid_language")
    return tuple(dict.fromkeys(codes))


def check_keywords(terms: list[str], param: str) -> list[str]:
    """OpenAI's rules for a term (single-line, no `<` or `>`) and this gateway's limits."""
    out: list[str] = []
    for term in terms:
        term = term.strip()
        if not term or any(c in term for c in "\r\n<>"):
            raise InvalidRequest(
                f"each {param} entry is a non-empty single line without `<` or `>`: {term!r}",
                param,
                "invalid_value",
            )
        if len(term) > MAX_KEYWORD_CHARS:
            raise InvalidRequest(f"a {param} entry has at most {MAX_KEYWORD_CHARS} characters",
                              param, "invalid_value")  # fmt: skip
        out.append(term)
    if len(out) > MAX_KEYWORDS:
        raise InvalidRequest(f"at most {MAX_KEYWORDS} {param} entries", param, "invalid_value")
    return out


def keywords(value: Any, deployment: list[str], param: str = "keywords") -> str | None:
    """The hotwords of a request: the deployment's `whisper.keywords` and then the request's
    own (added, not replacing them: the names a home configured stay recognised), each once."""
    terms = list(deployment) + (check_keywords(_strings(value, param), param) if value else [])
    unique = list({t.lower(): t for t in reversed(terms)}.values())[::-1]
    joined = ", ".join(unique)
    if len(joined) > MAX_KEYWORDS_TOTAL_CHARS:
        raise InvalidRequest(
            f"{param} and the deployment's whisper.keywords have at most "
            f"{MAX_KEYWORDS_TOTAL_CHARS} characters together ({len(joined)} sent)",
            param,
            "invalid_value",
        )
    return joined or None


def logprobs(value: Any, allowed: str, param: str, response_format: str | None = None) -> bool:
    """Whether `include` asks for log probabilities; a 400 for anything else it names, and
    (HTTP) for a response format other than json, as OpenAI refuses it."""
    if value is None:
        return False
    items = _strings(value, param)
    for item in items:
        if item != allowed:
            raise InvalidRequest(f"unsupported {param} value {item!r}; use {allowed!r}", param,
                              "invalid_value")  # fmt: skip
    if items and response_format not in (None, "json"):
        raise InvalidRequest("logprobs are only returned with response_format=json", param,
                          "invalid_value")  # fmt: skip
    return bool(items)


_VAD_FIELDS = {"threshold": (0.0, 1.0), "prefix_padding_ms": (0, 10000),
               "silence_duration_ms": (0, 10000)}  # fmt: skip


def chunking(value: Any, param: str = "chunking_strategy") -> VadTuning | None:
    """`"auto"` (the gateway's own VAD windows, as without the field) or `{"type": "server_vad",
    ...}` (its parameters replace the VAD's); a JSON string of either, as a form may carry it."""
    if value is None or value == "auto":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidRequest(f"{param} is `auto` or a server_vad object", param,
                              "invalid_value") from None  # fmt: skip
        if value == "auto":
            return None
    if not isinstance(value, dict) or value.get("type") != "server_vad":
        raise InvalidRequest(f"{param} is `auto` or an object of type `server_vad`", param,
                          "invalid_value")  # fmt: skip
    extra = set(value) - {"type", *_VAD_FIELDS}
    if extra:
        raise InvalidRequest(f"unknown {param} field(s): {', '.join(sorted(extra))}", param,
                          "invalid_value")  # fmt: skip
    got: dict[str, float | int] = {}
    for name, (lo, hi) in _VAD_FIELDS.items():
        v = value.get(name)
        if v is None:
            continue
        if isinstance(v, str):  # a form field is text: `chunking_strategy[threshold]=0.4`
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise InvalidRequest(f"{param}.{name} must be a number from {lo} to {hi}, not {v!r}",
                              f"{param}.{name}", "invalid_value")  # fmt: skip
        got[name] = float(v) if name == "threshold" else int(v)
    pad, silence = got.get("prefix_padding_ms"), got.get("silence_duration_ms")
    return VadTuning(
        threshold=got.get("threshold"),
        pad_ms=None if pad is None else int(pad),
        silence_ms=None if silence is None else int(silence),
    )


def extras(w: WhisperSettings, language: str | None, multilingual: bool, model: str, *,
           languages_: Any = None, keywords_: Any = None, include: Any = None,
           chunking_: Any = None, response_format: str | None = None) -> Extras:  # fmt: skip
    """The new fields of one request, checked: a 400 (param named as OpenAI's form names it)
    for the first bad one, before any audio is read."""
    return Extras(
        candidates=languages(languages_, language, multilingual, model),
        keywords=keywords(keywords_, w.keywords),
        logprobs=logprobs(include, LOGPROBS, "include[]", response_format),
        vad=chunking(chunking_),
    )
