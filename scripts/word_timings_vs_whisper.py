"""Whisper's word timestamps against ours on the same Kokoro speech, for information only (issue
20: Whisper is no reference). Run: `PYTHONPATH=. python scripts/word_timings_vs_whisper.py`."""

from __future__ import annotations

import re
import statistics

import numpy as np
from faster_whisper import WhisperModel

from gateway.config import Settings
from gateway.engines.base import Device, Lane
from gateway.engines.kokoro import KokoroEngine
from gateway.tasks.speech import SpeechPlan
from gateway.tasks.timings import WordClock
from tests.text.test_word_map import ENGLISH

MODELS = Settings().models.dir  # honours GATEWAY_MODELS__DIR


def _key(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


def main() -> None:
    kokoro = KokoroEngine("kokoro", MODELS / "kokoro", cpu_model=MODELS / "kokoro/model.timed.onnx")
    handle = kokoro.load(Device(Lane.cpu, threads=2))
    # plain words only, so both sides name the same words
    text = " ".join(s for s in ENGLISH if not re.search(r"\d|\*|\[", s))[:600]
    units, words = kokoro.plan_words(text, "jm_kumo", 1.0)
    clock = WordClock(SpeechPlan("kokoro", units, 24000, words))
    audio, ours = [], []
    for unit in units:
        result = kokoro.run(handle, unit)
        ours += clock.add(result)
        audio.append(result.audio)
    a = np.concatenate(audio)
    a16 = np.interp(np.arange(0, len(a), 1.5), np.arange(len(a)), a).astype(np.float32)
    for name in ("whisper-base", "whisper-tiny.en"):
        model = WhisperModel(str(MODELS / name), device="cpu", compute_type="int8", cpu_threads=2)
        segments, _ = model.transcribe(a16, language="en", word_timestamps=True, beam_size=1)
        theirs = [w for s in segments for w in s.words]
        i, starts, ends = 0, [], []
        for w in theirs:
            for j in range(i, min(i + 4, len(ours))):
                if _key(str(ours[j]["word"])) == _key(w.word):
                    starts.append(abs(w.start - float(ours[j]["start"])))
                    ends.append(abs(w.end - float(ours[j]["end"])))
                    i = j + 1
                    break
        p90 = sorted(starts)[int(0.9 * len(starts))]
        print(
            f"{name}: {len(starts)}/{len(ours)} words matched; |start diff| median "
            f"{statistics.median(starts) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms; |end diff| "
            f"median {statistics.median(ends) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
