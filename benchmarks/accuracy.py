"""Accuracy of long transcriptions: the gateway (one VAD pass, windows decoded without a second)
against the raw library call on the whole file (`faster_whisper` `transcribe(vad_filter=True)`),
both scored by word error rate against the text that was spoken (language `en` on both sides).

Inputs are made with the gateway's own TTS (cached sentences, see `clips.py`): two long clips of
all pool sentences with short and long pauses, and an hour-long upload (8 kHz MP3, silence with a
tone each minute and a sentence every five minutes, the last one a minute before the end), where
a phrase after a long silence is most easily clipped. Target: gateway WER <= raw WER + 1 point.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.support.wer import error_rate, wer, words

from . import clips
from .client import AUTH

__all__ = ["TARGET_POINTS", "error_rate", "run", "wer"]

TARGET_POINTS = 1.0


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    n = int(len(audio) * dst / src)
    x = np.linspace(0, len(audio) - 1, n)
    return np.interp(x, np.arange(len(audio)), audio).astype(np.float32)


def _long_clip(
    base: str, start: int, pauses: tuple[float, ...], count: int
) -> tuple[np.ndarray, int, str]:
    parts, texts, rate = [], [], 24000
    for i in range(count):
        text = clips.POOL[(start + i) % len(clips.POOL)]
        audio, rate = clips.speak(base, text)
        parts += [audio, np.zeros(int(pauses[i % len(pauses)] * rate), np.float32)]
        texts.append(text)
    return np.concatenate(parts), rate, " ".join(texts)


def _hour(base: str, minutes: int = 60) -> tuple[np.ndarray, int, str]:
    rate = 8000
    x = np.zeros(rate * 60 * minutes, np.float32)
    t = np.arange(rate) / rate
    beep = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for s in range(0, len(x) - rate, rate * 60):
        x[s + rate * 10 : s + rate * 11] = beep
    texts = []
    places = [5, *range(300, 60 * minutes - 60, 300), 60 * minutes - 60 + 30]
    for i, at in enumerate(places):
        text = clips.POOL[i % (4 if minutes < 60 else len(clips.POOL))]
        audio, r = clips.speak(base, text)
        spoken = _resample(audio, r, rate)
        x[at * rate : at * rate + len(spoken)] = spoken
        texts.append(text)
    return x, rate, " ".join(texts)


def run(base: str, raw: Any, folder: Path, quick: bool, say: Any) -> dict[str, Any]:
    """WER of the gateway and of the raw call on each input; `raw` is a `measure.RawWorker`."""
    cases: list[dict[str, Any]] = []
    n = 4 if quick else len(clips.POOL)  # quick: the sentences the quick report made already
    inputs = [
        ("long clip, pauses 0.6/3 s", lambda: _long_clip(base, 0, (0.6, 3.0), n)),
        ("long clip, pauses 1/2/0.6 s", lambda: _long_clip(base, 6 % n, (1.0, 2.0, 0.6), n)),
        (
            "5-minute upload" if quick else "hour-long upload",
            lambda: _hour(base, 5 if quick else 60),
        ),
    ]
    with httpx.Client(timeout=httpx.Timeout(1800.0, connect=10.0)) as client:
        for label, make in inputs:
            audio, rate, text = make()
            path = folder / f"accuracy-{len(cases)}.mp3"
            path.write_bytes(clips.pyav_mp3(audio, rate, 16000 if rate == 8000 else 64000))
            say(f"accuracy: {label} ({len(audio) / rate:.0f} s)")
            # English on both sides: the pool's voice is a Japanese one speaking English, and
            # language detection on it would score the detector, not the windows
            r = raw.call(op="transcribe", path=str(path), language="en")
            t0 = time.perf_counter()
            reply = client.post(
                f"{base}/v1/audio/transcriptions",
                files={"file": (path.name, path.read_bytes())},
                data={"model": "whisper-1", "language": "en"},
                headers=AUTH,
            )
            reply.raise_for_status()
            gw_s, said = time.perf_counter() - t0, str(reply.json()["text"])
            ours, theirs = wer(text, said), wer(text, r["text"])
            cases.append(
                {
                    "case": label,
                    "audio_s": len(audio) / rate,
                    "words": len(words(text)),
                    "raw_wer": theirs,
                    "gateway_wer": ours,
                    "points": 100 * (ours - theirs),
                    "met": 100 * (ours - theirs) <= TARGET_POINTS,
                    "raw_s": r["s"],
                    "gateway_s": gw_s,
                    "raw_text": r["text"],
                    "gateway_text": said,
                }
            )
            path.unlink(missing_ok=True)
    return {"target_points": TARGET_POINTS, "cases": cases}
