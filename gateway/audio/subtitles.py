"""SRT and WebVTT from transcription segments."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _ts(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Iterable[dict[str, Any]]) -> str:
    cues = []
    for i, seg in enumerate(segments, start=1):
        start, end = _ts(seg["start"], ","), _ts(seg["end"], ",")
        cues.append(f"{i}\n{start} --> {end}\n{seg['text'].strip()}\n")
    return "\n".join(cues)


def to_vtt(segments: Iterable[dict[str, Any]]) -> str:
    cues = ["WEBVTT\n"]
    for seg in segments:
        start, end = _ts(seg["start"], "."), _ts(seg["end"], ".")
        cues.append(f"{start} --> {end}\n{seg['text'].strip()}\n")
    return "\n".join(cues)
