"""The `server` settings section: where `gateway serve` listens, its keys, and the bounds on each
HTTP request and connection."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .lists import StrList


class ServerSettings(BaseModel):
    # An assignment of the comma form (`= "a,b"`, as tests and tools do) is decoded like the
    # environment, so a list setting never holds a bare string.
    model_config = ConfigDict(validate_assignment=True)

    host: str = Field("127.0.0.1", description="Address `gateway serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `gateway serve` listens on.")
    api_keys: StrList = Field(
        default_factory=list,
        description="Comma-separated API keys. Empty: no key is required. Keys are compared in "
        "constant time and never logged.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File with one API key per line (e.g. a mounted Kubernetes Secret); "
        "added to `api_keys`.",
    )
    open_paths: StrList = Field(
        default_factory=lambda: ["/status", "/realtime"],
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
    cors_origins: StrList = Field(
        default_factory=list,
        description="Comma-separated origins allowed by CORS. Empty: CORS is off.",
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
