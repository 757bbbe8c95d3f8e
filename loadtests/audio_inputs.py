"""Audio inputs of the load test, made by the gateway under test itself (its own TTS), cached.

Nothing is downloaded: sentences are spoken by `POST /v1/audio/speech` on the target, joined into
clips of the lengths the users need and encoded like real clients send them (MP3 from Open
WebUI, Opus in WebM from a browser). Files are cached in a temp folder (`GATEWAY_BENCH_CACHE`
overrides it), so only the first run pays for the TTS.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import clips

log = logging.getLogger("loadtest.audio")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per TTS call is noise here

VOICE_NOTE_SECONDS = (3.0, 5.0, 8.0)


@dataclass
class Inputs:
    voice_notes: list[tuple[str, bytes]] = field(default_factory=list)  # (format, bytes)
    batch: bytes = b""
    batch_seconds: float = 0.0


_lock = threading.Lock()  # a gevent lock once locust has monkey-patched threading
_inputs: Inputs | None = None


def prepare(host: str, batch_seconds: float = 60.0) -> Inputs:
    """Build (or load from the cache) every clip; safe to call from many users at once."""
    global _inputs
    with _lock:
        if _inputs is not None:
            return _inputs
        host = host.rstrip("/")
        log.info("preparing audio inputs with the gateway's own TTS at %s (cached in %s)",
                 host, clips.cache_dir())  # fmt: skip
        notes: list[tuple[str, bytes]] = []
        for i, secs in enumerate(VOICE_NOTE_SECONDS):
            for fmt in ("mp3", "webm"):
                notes.append((fmt, Path(clips.clip_file(host, secs, fmt, start=i * 2)).read_bytes()))
        batch = Path(clips.clip_file(host, batch_seconds, "mp3", start=5)).read_bytes()
        _inputs = Inputs(notes, batch, batch_seconds)
        log.info("audio inputs ready: %d voice notes, one %.0f s batch clip", len(notes),
                 batch_seconds)  # fmt: skip
        return _inputs
