"""SRT and WebVTT from transcription segments, or from spoken words' timings."""

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


CUE_CHARS = 42  # a subtitle line's usual most


def word_cues(words: Iterable[dict[str, Any]], most: int = CUE_CHARS) -> list[dict[str, Any]]:
    """Words with times -> caption cues of at most `most` characters, a new cue after each
    sentence end; each cue from its first word's start to its last word's end."""
    cues: list[dict[str, Any]] = []
    line: list[dict[str, Any]] = []

    def close() -> None:
        if line:
            text = " ".join(str(w["word"]) for w in line)
            cues.append({"start": line[0]["start"], "end": line[-1]["end"], "text": text})
            line.clear()

    for word in words:
        if line and len(" ".join(str(w["word"]) for w in [*line, word])) > most:
            close()
        line.append(word)
        if str(word["word"])[-1:] in ".!?。！？…":
            close()
    close()
    return cues
