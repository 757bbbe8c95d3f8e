"""The Realtime API's JSON events: server events in OpenAI's shapes, and the session
configuration of both schemas clients send (GA `session.update` with `session.type:
"transcription"`, beta `transcription_session.update`) parsed into one `Config`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Any

from ..errors import GatewayError, InvalidRequest
from ..runtime import Runtime
from ..tasks import transcription as stt
from ..tasks import transcription_options as opts
from .codecs import FORMATS, GA_TO_BETA, AudioFormat, ga_format
from .turns import VadParams, vad_params

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(kind: str, **fields: Any) -> Event:
    return {"event_id": new_id("event"), "type": kind, **fields}


def error_event(err: GatewayError, event_id: str | None = None) -> Event:
    """OpenAI's error event: `{"type": "error", "error": {type, code, message, param, event_id}}`
    (`event_id`: the client event that caused it)."""
    return event("error", error={"type": err.type, "code": err.code, "message": err.message,
                                 "param": err.param, "event_id": event_id})  # fmt: skip


def parse(text: str) -> Event:
    """One client event; raises InvalidRequest for what is not a JSON object."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidRequest("the event is not valid JSON", None, "invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("an event is a JSON object", None, "invalid_json")
    return data


def kind(ev: Event) -> str:
    if not isinstance(ev.get("type"), str):
        raise InvalidRequest("the event has no `type`", "type", "missing_required_parameter")
    return str(ev["type"])


@dataclass(frozen=True)
class Config:
    """One session's configuration, whichever schema set it."""

    format: AudioFormat = FORMATS["audio/pcm"]
    model: str = "whisper-1"  # as the client named it; `plan` holds the resolved id
    language: str | None = None
    prompt: str | None = None
    vad: VadParams | None = VadParams()
    turn_detection: dict[str, Any] | None = None  # as sent (None with `vad`: the defaults)
    noise_reduction: Any = None
    beta: bool = False
    languages: tuple[str, ...] = ()  # the transcription config's `languages`, `keywords`
    keywords: tuple[str, ...] = ()
    logprobs: bool = False  # `include: ["item.input_audio_transcription.logprobs"]`
    live: bool | None = None  # the gateway's `transcription.live`; None: the deployment's

    def live_mode(self, default: bool) -> bool:
        """Words while the speaker talks (tasks/live.py): as the session asked, else on for
        `gpt-live-transcribe`, else the deployment's default."""
        if self.live is not None:
            return self.live
        return stt.live_requested(self.model) or default

    def plan(self, gw: Runtime) -> stt.TranscriptionPlan:
        return stt.check(gw, stt.TranscriptionInput(
            self.model, language=self.language, prompt=self.prompt,
            languages=self.languages or None, keywords=self.keywords or None,
            include=[opts.LOGPROBS] if self.logprobs else None))  # fmt: skip

    def _include(self) -> list[str]:
        return [opts.REALTIME_LOGPROBS] if self.logprobs else []

    def _turn_detection(self) -> dict[str, Any] | None:
        if self.vad is None:
            return None
        p = self.vad
        defaults = {"type": "server_vad", "threshold": p.threshold,
                    "prefix_padding_ms": p.prefix_padding_ms,
                    "silence_duration_ms": p.silence_duration_ms}  # fmt: skip
        return {**defaults, **(self.turn_detection or {})}

    def describe(self, session_id: str) -> dict[str, Any]:
        """The session object of `session.created` / `.updated` (or the beta names)."""
        transcription: dict[str, Any] = {"model": self.model, "language": self.language,
                                         "prompt": self.prompt}  # fmt: skip
        if self.languages:
            transcription["languages"] = list(self.languages)
        if self.keywords:
            transcription["keywords"] = list(self.keywords)
        if self.beta:
            return {"id": session_id, "object": "realtime.transcription_session",
                    "input_audio_format": GA_TO_BETA[self.format.name],
                    "input_audio_transcription": transcription,
                    "turn_detection": self._turn_detection(),
                    "input_audio_noise_reduction": self.noise_reduction,
                    "include": self._include() or None}  # fmt: skip
        fmt = {"type": self.format.name, "rate": self.format.rate}
        return {"type": "transcription", "id": session_id,
                "object": "realtime.transcription_session",
                "audio": {"input": {"format": fmt, "transcription": transcription,
                                    "turn_detection": self._turn_detection(),
                                    "noise_reduction": self.noise_reduction}},
                "include": self._include()}  # fmt: skip


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{param} must be an object", param, "invalid_type")
    return value


def _text(value: Any, param: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string", param, "invalid_type")
    return value or None


def _transcription(config: Config, value: Any, param: str) -> Config:
    t = _object(value, param)
    model = _text(t.get("model"), f"{param}.model") if "model" in t else config.model
    language = _text(t.get("language"), f"{param}.language") if "language" in t else config.language
    prompt = _text(t.get("prompt"), f"{param}.prompt") if "prompt" in t else config.prompt
    languages = _strings(t, "languages", param, config.languages)
    keywords = _strings(t, "keywords", param, config.keywords)
    live = t.get("live", config.live)
    if live is not None and not isinstance(live, bool):
        raise InvalidRequest(f"{param}.live must be true, false or null", f"{param}.live",
                          "invalid_type")  # fmt: skip
    return replace(config, model=model or "whisper-1", language=language, prompt=prompt,
                   languages=languages, keywords=keywords, live=live)  # fmt: skip


def _strings(t: dict[str, Any], name: str, param: str, was: tuple[str, ...]) -> tuple[str, ...]:
    """A list field of the transcription config (absent: as it was; null: none)."""
    if name not in t:
        return was
    value, param = t[name], f"{param}.{name}"
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{param} must be an array of strings", param, "invalid_type")
    return tuple(value)


def _logprobs(value: Any, param: str) -> bool:
    return opts.logprobs(value, opts.REALTIME_LOGPROBS, param)


def _turns(config: Config, value: Any, param: str) -> Config:
    if value is None:
        return replace(config, vad=None, turn_detection=None)
    td = _object(value, param)
    return replace(config, vad=vad_params(td, param), turn_detection=dict(td))


def update(config: Config, ev: Event) -> Config:
    """The configuration after a `session.update` or `transcription_session.update`; raises
    InvalidRequest (and changes nothing) for a field it cannot honour."""
    if ev["type"] == "transcription_session.update":
        s = _object(ev.get("session", {}), "session")
        out = replace(config, beta=True)
        if "input_audio_format" in s:
            out = replace(
                out, format=ga_format(s["input_audio_format"], "session.input_audio_format")
            )
        if s.get("input_audio_transcription") is not None:
            out = _transcription(out, s["input_audio_transcription"],
                                 "session.input_audio_transcription")  # fmt: skip
        if "turn_detection" in s:
            out = _turns(out, s["turn_detection"], "session.turn_detection")
        if "input_audio_noise_reduction" in s:
            out = replace(out, noise_reduction=s["input_audio_noise_reduction"])
        if "include" in s:
            out = replace(out, logprobs=_logprobs(s["include"], "session.include"))
        return out
    s = _object(ev.get("session"), "session")
    kind = s.get("type", "transcription")
    if kind != "transcription":
        raise InvalidRequest(f"this server runs transcription sessions only, not {kind!r}; send "
                             "`session.type: \"transcription\"`", "session.type",
                             "invalid_value")  # fmt: skip
    out = replace(config, beta=False)
    audio = _object(s.get("audio", {}), "session.audio")
    inp = _object(audio.get("input", {}), "session.audio.input")
    if "format" in inp:
        out = replace(out, format=ga_format(inp["format"], "session.audio.input.format"))
    if inp.get("transcription") is not None:
        out = _transcription(out, inp["transcription"], "session.audio.input.transcription")
    if "turn_detection" in inp:
        out = _turns(out, inp["turn_detection"], "session.audio.input.turn_detection")
    if "noise_reduction" in inp:
        out = replace(out, noise_reduction=inp["noise_reduction"])
    if "include" in s:
        out = replace(out, logprobs=_logprobs(s["include"], "session.include"))
    return out
