"""The `wyoming` settings section (Home Assistant's protocol), apart from config.py so that file
stays short; config.py imports it into the one settings tree."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WyomingSettings(BaseModel):
    enabled: bool = Field(
        True,
        description="Serve the Wyoming protocol (Home Assistant's Assist: speech-to-text and "
        "text-to-speech on one port) next to the HTTP API. Wyoming has no authentication: "
        "the bind address and a network policy are its only guards.",
    )
    host: str | None = Field(
        None, description="Address the Wyoming listener binds to; unset: the HTTP `server.host`."
    )
    port: int = Field(
        10300, ge=0, le=65535, description="TCP port of the Wyoming listener; 0: any free port."
    )
    live: bool = Field(
        False,
        description="Send `transcript-chunk` events with words while the audio streams, "
        "committed as Realtime's live mode commits them (docs/live-transcription.md); the "
        "final `transcript` is the chunks joined. Clients that ignore chunks see no change.",
    )
    max_audio_s: float = Field(
        120.0,
        gt=0,
        description="Longest utterance in seconds of audio; more gets an `error` event.",
    )
    idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A connection that asks for no work this long while none of its work runs "
        "is closed (`ping` and `describe` do not keep it open).",
    )
    max_connections: int = Field(
        64,
        ge=1,
        description="Wyoming connections open at once; the next one gets an `error` event "
        "(`too_many_connections`) and is closed.",
    )
    max_pending: int = Field(
        4,
        ge=1,
        description="Replies (transcripts, speech) one connection may have waiting or running; "
        "one more gets an `error` event (`too_many_pending`) and its audio or text is dropped.",
    )
    zeroconf: bool = Field(
        False,
        description="Announce the listener as `_wyoming._tcp.local.` (mDNS) for Home Assistant "
        "to discover; mDNS does not cross a Kubernetes pod network.",
    )
