"""Long transcriptions: one VAD pass cuts the windows, and they decode as well as the raw call.

A 75 s clip of Kokoro speech with short and long pauses (real models, CPU): the gateway's path
(`plan_windows`, then one `WhisperEngine.run` per window) runs the Silero VAD once, puts every
segment where its words are in the file, and its WER against the text spoken is no worse than
faster-whisper's own call on the whole file (`transcribe(vad_filter=True)`) plus one point.
"""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import transcribe as fw_transcribe
from faster_whisper import vad as fw_vad
from faster_whisper.vad import VadOptions

from benchmarks.clips import POOL
from gateway.config import Settings
from gateway.engines import vad
from gateway.engines import whisper as whisper_mod
from gateway.engines.base import Device
from gateway.engines.whisper import SAMPLE_RATE, TranscribeUnit, WhisperEngine, plan_windows

from ..conftest import spoken_16k, wer

# long clips through the real Whisper throughout
pytestmark = pytest.mark.slow

MODELS = Settings().models.dir
SENTENCES = POOL[:6]
PAUSES = (0.6, 3.0)  # short pauses stay inside a region; long ones split regions


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, str, list[tuple[float, float]]]:
    """About 75 s: the sentences twice, with pauses; the text, and where each sentence is."""
    spoken = spoken_16k(SENTENCES)
    parts, texts, places, at = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], [], SAMPLE_RATE // 2
    for i in range(2 * len(SENTENCES)):
        audio = spoken[i % len(SENTENCES)]
        pause = np.zeros(int(PAUSES[i % 2] * SAMPLE_RATE), np.float32)
        places.append((at / SAMPLE_RATE, (at + len(audio)) / SAMPLE_RATE))
        parts += [audio, pause]
        texts.append(SENTENCES[i % len(SENTENCES)])
        at += len(audio) + len(pause)
    return np.concatenate(parts), " ".join(texts), places


@pytest.fixture(scope="module")
def whisper() -> tuple[WhisperEngine, object]:
    engine = WhisperEngine("whisper-base", MODELS / "whisper-base", multilingual=True)
    return engine, engine.load(Device("cpu", 0, 2))


def test_one_vad_pass_and_windows_decode_as_well_as_the_raw_call(
    clip: tuple[np.ndarray, str, list[tuple[float, float]]],
    whisper: tuple[WhisperEngine, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio, text, places = clip
    engine, handle = whisper
    calls = []

    def counted(original):  # type: ignore[no-untyped-def]
        def vad(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(len(args[0]))
            return original(*args, **kwargs)

        return vad

    monkeypatch.setattr(
        whisper_mod, "get_speech_timestamps", counted(whisper_mod.get_speech_timestamps)
    )
    monkeypatch.setattr(
        fw_transcribe, "get_speech_timestamps", counted(fw_transcribe.get_speech_timestamps)
    )

    windows = plan_windows(audio, 30.0)
    assert len(windows) >= 3
    segments = []
    for win in windows:
        speech = sum(b - a for a, b in win.pieces)
        assert 0 < speech <= 30 * SAMPLE_RATE
        assert all(a < b for a, b in win.pieces)
        assert all(p[1] <= q[0] for p, q in zip(win.pieces, win.pieces[1:], strict=False))
        unit = TranscribeUnit(
            audio=win.audio(audio),
            offset_s=win.start / SAMPLE_RATE,
            pieces=tuple((a, b - a) for a, b in win.pieces),
            vad_filter=False,
            language="en",
        )
        result = engine.run(handle, unit)
        for seg in result.segments:  # each segment lies in the file where its window's audio is
            assert win.start / SAMPLE_RATE - 0.05 <= seg["start"] <= seg["end"]
            assert seg["end"] <= win.end / SAMPLE_RATE + 0.05, (seg, win)
        segments += result.segments
    assert calls == [len(audio)], "the VAD ran more than once"

    # every segment starts on a spoken sentence, not in a pause (times mapped through the pieces)
    for seg in segments:
        assert any(start - 1.0 <= seg["start"] <= end for start, end in places), seg
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)

    ours = wer(text, " ".join(s["text"] for s in segments))
    raw_segments, _ = handle.transcribe(audio, language="en", beam_size=5, vad_filter=True)  # type: ignore[attr-defined]
    raw = wer(text, " ".join(s.text for s in raw_segments))
    # The bound is +1 point, measured on the long clips and the hour-long upload by
    # `python -m benchmarks report` (docs/benchmarks.md, section 6). On this clip of a few dozen words
    # one word is several points, and two CI runs of the same code differed by one word (0.103
    # against 0.077 once): the test allows one word, so it fails on a window that loses a
    # phrase, not on a single word that comes and goes.
    one_word = 1 / len(text.split())
    assert ours <= raw + max(0.01, one_word) + 1e-9, (ours, raw)


def test_short_clip_is_one_window_that_runs_the_vad_itself() -> None:
    audio = np.zeros(20 * SAMPLE_RATE, np.float32)
    windows = plan_windows(audio, 30.0)
    assert [(w.start, w.end, w.pieces) for w in windows] == [(0, len(audio), ())]
    assert len(windows[0].audio(audio)) == len(audio)


def test_speech_far_apart_never_shares_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions packed into one window must be close in the file: an hour-long upload with a
    phrase at 5 s and one at 3570 s once came back as a single segment timed at 4.5 s."""
    sr = SAMPLE_RATE
    chunks = [(5 * sr, 8 * sr), (9 * sr, 12 * sr), (3570 * sr, 3573 * sr)]
    monkeypatch.setattr(whisper_mod, "get_speech_timestamps",
                        lambda audio, options: [{"start": a, "end": b} for a, b in chunks])  # fmt: skip
    windows = plan_windows(np.zeros(3600 * sr, np.float32), 30.0)
    assert len(windows) == 2  # the two close regions together, the far one alone
    assert windows[0].start < 6 * sr and windows[0].end < 13 * sr
    assert windows[1].start > 3569 * sr


def test_windows_leave_whisper_a_margin_and_share_the_speech(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60 s of 4.4 s sentences: as few windows as fit 30 s less the margin (Whisper, hearing
    speech up to the end of its input, leaves the last phrase for a second pass), the first
    filled (the language is detected on it), the others even (no 3 s window costing a whole
    encoder pass)."""
    sr = SAMPLE_RATE
    chunks = [(int(i * 5.0 * sr), int((i * 5.0 + 4.4) * sr)) for i in range(12)]
    monkeypatch.setattr(whisper_mod, "get_speech_timestamps",
                        lambda audio, options: [{"start": a, "end": b} for a, b in chunks])  # fmt: skip
    windows = plan_windows(np.zeros(60 * sr, np.float32), 30.0)
    speech = [sum(b - a for a, b in w.pieces) / sr for w in windows]
    assert len(windows) == 3, speech
    assert all(s <= 30.0 - whisper_mod.MARGIN_S for s in speech), speech
    assert speech[0] == max(speech)
    assert max(speech[1:]) - min(speech[1:]) <= 5.0, speech  # even, to a sentence


def test_a_window_is_decoded_in_one_pass_when_it_hears_silence_after_its_speech(
    whisper: tuple[WhisperEngine, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first window of the report's 48 s clip (five sentences, 23.2 s): with faster-whisper's
    zero features after it, Whisper left the fifth sentence for a second encoder pass."""
    engine, handle = whisper
    spoken = spoken_16k(list(POOL[:5]), voice="alloy")
    pause = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([x for s in spoken for x in (s, pause)])[: int(23.19 * SAMPLE_RATE)]
    passes = []
    encode = handle.encode  # type: ignore[attr-defined]
    monkeypatch.setattr(handle, "encode", lambda features: passes.append(1) or encode(features))
    unit = TranscribeUnit(audio=audio, offset_s=0.0, pieces=((0, len(audio)),), vad_filter=False,
                          language="en")  # fmt: skip
    result = engine.run(handle, unit)
    assert wer(" ".join(POOL[:5]), " ".join(s["text"] for s in result.segments)) <= 0.1
    assert len(passes) == 1
    assert result.segments[-1]["end"] <= len(audio) / SAMPLE_RATE


@pytest.mark.parametrize("cut", ["as spoken", "whole windows"])
def test_vad_in_slices_finds_the_regions_of_the_whole_array_pass(
    clip: tuple[np.ndarray, str, list[tuple[float, float]]],
    cut: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The VAD that plans a long upload's windows runs over slices of the clip (bounded memory)
    and finds exactly the regions faster-whisper's pass over the whole array finds, with its
    defaults and with `plan_windows`' options, on speech at several loudnesses, slices cut
    inside phrases, a clip that ends (in a phrase) on a whole 512-sample window and one that
    ends 12 samples short of one (faster-whisper's pass zeroes the last 64 samples it hears)."""
    audio, _, places = clip
    mid = int(sum(places[3]) / 2 * SAMPLE_RATE)  # in the fourth sentence
    loud = np.concatenate([audio, 0.3 * audio, 2.0 * audio[:mid]]).astype(np.float32)
    loud = loud[: len(loud) // 512 * 512 - (12 if cut == "as spoken" else 0)]
    assert np.abs(loud[-64:]).max() > 0.01
    monkeypatch.setattr(vad, "SLICE", 7)  # 0.22 s: every phrase spans several slices
    probabilities = vad.speech_probabilities(loud)
    padded = np.pad(loud, (0, 512 - len(loud) % 512))
    whole = fw_vad.get_vad_model()(padded).reshape(-1)
    assert np.array_equal(probabilities, whole)
    plans = VadOptions(max_speech_duration_s=30.0 - whisper_mod.PAD_BEFORE_S
                       - whisper_mod.PAD_AFTER_S - 1.0, min_silence_duration_ms=500)  # fmt: skip
    for options in (VadOptions(), plans):
        ours = vad.get_speech_timestamps(loud, options)
        theirs = fw_vad.get_speech_timestamps(loud.copy(), options)
        assert len(theirs) >= 2 * len(SENTENCES)
        assert ours == theirs
