"""The scheduler with the real engines on the CPU: speech arriving while a long transcription runs
at batch priority starts after at most one transcription unit, and the transcription stays right."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gateway.config import Settings
from gateway.engines.whisper import SAMPLE_RATE, TranscribeUnit, plan_windows
from gateway.scheduler import Level
from gateway.service import Gateway

from .conftest import wer

LONG_TEXT = (
    "Every morning the old lighthouse keeper climbed the narrow stairs to check the great lamp. "
    "He cleaned the glass with a soft cloth and wrote the weather in his notebook. "
    "Ships passed far away on the grey water, and gulls circled above the rocks. "
    "In the afternoon he repaired the fence around the small garden behind the tower. "
    "His neighbour brought fresh bread from the village and they talked about the coming storm. "
    "When the evening came, the keeper lit the lamp and watched its beam sweep across the sea. "
    "He thought about his daughter, who lived in the city and wrote him long letters every month. "
    "Before going to sleep he read a chapter of his favourite book about sailors and distant islands. "
    "The wind grew stronger during the night, but the light kept shining until the sun rose again. "
    "In the morning he made a cup of tea and started the same quiet work once more. "
    "On Sundays a small boat brought letters, oil for the lamp and news from the harbour. "
    "The captain of that boat was a cheerful woman who always laughed at his old jokes. "
    "Together they would carry the heavy boxes up the path and rest on the bench by the door. "
    "Years later, people in the village still told stories about the keeper and his bright lamp."
)
SENTENCES = [
    "Your meeting starts in five minutes.",
    "The weather today is sunny and warm.",
    "I have added milk to the shopping list.",
    "Your package was delivered this morning.",
    "The train to the airport leaves at noon.",
]


def _resample_24k_to_16k(audio: np.ndarray) -> np.ndarray:
    n = int(len(audio) * 2 / 3)
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(
        np.float32
    )


@pytest.mark.timeout(900)
def test_speech_waits_at_most_one_transcription_unit_and_transcript_stays_right() -> None:
    async def main() -> tuple[list, list, str, float]:
        gw = Gateway(Settings())
        gw.scheduler.start()
        kokoro = gw.models["kokoro"].engine
        units = await asyncio.to_thread(kokoro.plan, LONG_TEXT, "jf_alpha", 1.0)
        async with gw.scheduler.job("kokoro", Level.batch) as job:
            parts = [await job.run(u) for u in units]
        audio = _resample_24k_to_16k(np.concatenate(parts))
        duration = len(audio) / SAMPLE_RATE

        windows = plan_windows(audio, gw.settings.whisper.window_s)
        stt_records: list = []
        texts: list[str] = []

        async def transcribe() -> None:
            async with gw.scheduler.job("whisper-base", Level.batch) as job:
                language = None
                for win in windows:
                    unit = TranscribeUnit(
                        audio=audio[win.start : win.end],
                        offset_s=win.start / SAMPLE_RATE,
                        language=language,
                    )
                    result = await job.run(unit)
                    language = result.language
                    texts.extend(s["text"].strip() for s in result.segments)
                stt_records.extend(job.records)

        speech_records: list = []

        async def speak(text: str, delay: float) -> None:
            await asyncio.sleep(delay)
            planned = await asyncio.to_thread(kokoro.plan, text, "alloy", 1.0)
            async with gw.scheduler.job("kokoro", Level.interactive) as job:
                for u in planned:
                    await job.run(u)
                speech_records.extend(job.records)

        await asyncio.gather(
            transcribe(), *(speak(t, 1.0 + 2.5 * i) for i, t in enumerate(SENTENCES))
        )
        await gw.stop()
        return speech_records, stt_records, " ".join(texts), duration

    speech, stt, text, duration = asyncio.run(main())
    assert duration >= 60, duration
    assert len(stt) >= 3  # really cut into several windows
    assert len(speech) >= len(SENTENCES)
    for rec in speech:
        started_meanwhile = [r for r in stt if rec.enqueued_at < r.started_at < rec.started_at]
        assert len(started_meanwhile) <= 1, (rec, started_meanwhile)
    assert wer(LONG_TEXT, text) <= 0.15, text
