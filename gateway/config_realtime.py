"""The `realtime` settings section (OpenAI's Realtime API, transcription sessions over a
WebSocket at /v1/realtime), apart from config.py so that file stays short; config.py imports it
into the one settings tree."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RealtimeSettings(BaseModel):
    enabled: bool = Field(
        True,
        description="Serve OpenAI's Realtime API for transcription (`/v1/realtime?intent="
        "transcription`, a WebSocket on the HTTP port, the same API keys).",
    )
    max_sessions: int = Field(
        16,
        ge=0,
        description="Realtime sessions open at once; the next one gets an `error` event "
        "(`session_limit_reached`) and is closed.",
    )
    idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A session that sends nothing this long while no turn of its is being "
        "transcribed is closed with an `error` event (`idle_timeout`).",
    )
    max_session_s: float = Field(
        3600.0,
        gt=0,
        description="Longest a session may stay open (OpenAI: 60 min); then it is closed with "
        "an `error` event (`session_expired`).",
    )
    max_pending_turns: int = Field(
        4,
        ge=1,
        description="Committed turns one session may have waiting or being transcribed; one "
        "more gets an `error` event (`too_many_pending_turns`) and its audio is dropped (a "
        "`commit` refused so keeps the buffer).",
    )
    max_buffer_s: float = Field(
        120.0,
        gt=0,
        description="Most audio the input buffer holds, in seconds. With `server_vad` a turn "
        "that reaches it is committed there; without turn detection an append past it (and "
        "with it, one append longer than it) gets an `error` event "
        "(`input_audio_buffer_too_large`) and is dropped.",
    )
    max_append_mb: float = Field(
        15.0,
        gt=0,
        le=1024,
        description="Largest `audio` field of one `input_audio_buffer.append`, in MiB of "
        "base64 text (OpenAI's limit is 15 MiB); larger gets an `error` event.",
    )
    vad_threads: int = Field(
        1,
        ge=1,
        description="Threads that run turn detection (Silero VAD) for all sessions together, "
        "off the event loop.",
    )
    live: bool = Field(
        False,
        description="Live transcription by default: deltas carry words while the speaker "
        "talks (LocalAgreement-2, docs/live-transcription.md). A session's "
        "`transcription.live` overrides it; the model `gpt-live-transcribe` turns it on.",
    )
    live_interval_s: float = Field(
        1.0,
        gt=0,
        description="In live mode, how often the turn being spoken is decoded again, in "
        "seconds (partial decodes are speculative work: they run after interactive units).",
    )
