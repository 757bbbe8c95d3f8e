"""Silero speech regions of a whole upload in memory bounded by one slice, not by the upload.

faster-whisper's `get_speech_timestamps` pads a copy of the clip and then builds a second one
with each 512-sample window's 64 samples of context (over two arrays beside the clip: 1.1 GiB
for a two-hour upload, the largest part of its request's peak). This runs the same ONNX model
over slices of the clip, with the LSTM state and the context carried from one slice to the next
as faster-whisper carries them between its own batches, so the model gets the same inputs and
gives the same probabilities; the regions then come from faster-whisper's rules, copied below
(tests/api/test_upload_memory.py compares both passes on speech).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from faster_whisper.vad import VadOptions, get_vad_model

WINDOW = 512  # samples per probability at 16 kHz
CONTEXT = 64  # samples of the previous window the model hears before each window
# Windows per model call: faster-whisper's own batch (10,000 windows) grew a process by 180 MiB
# (the input and the model's buffers for it), 1,000 by 18 MiB; 256 (8 s of audio) by about 1 MiB,
# no slower. With the state carried, any size gives the same probabilities.
SLICE = 256


@dataclass(frozen=True)
class VadTuning:
    """A request's own VAD parameters (OpenAI's `chunking_strategy: server_vad`), on top of
    the options a pass would use without them; None: the pass's own value."""

    threshold: float | None = None
    pad_ms: int | None = None  # `prefix_padding_ms`: speech padded by this each side
    silence_ms: int | None = None  # `silence_duration_ms`: a pause that ends a region

    def apply(self, options: VadOptions) -> VadOptions:
        changes: dict[str, Any] = {}
        if self.threshold is not None:
            changes["threshold"] = self.threshold
        if self.pad_ms is not None:
            changes["speech_pad_ms"] = self.pad_ms
        if self.silence_ms is not None:
            changes["min_silence_duration_ms"] = self.silence_ms
        return replace(options, **changes)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """One probability per 512 samples, as faster-whisper's pass computes them: the clip padded
    with zeros to whole windows (a whole window of zeros where it already ends on one), the last
    64 samples of the last window zeroed (its pass writes the first window's zero context into
    the padded copy's end), the first window's context zeros."""
    session = get_vad_model().session
    n = len(audio) // WINDOW + 1
    last = np.zeros(WINDOW, np.float32)
    tail = audio[(n - 1) * WINDOW :]
    last[: len(tail)] = tail
    last[-CONTEXT:] = 0
    probs = np.empty(n, np.float32)
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    batch = np.empty((SLICE, CONTEXT + WINDOW), np.float32)
    for i in range(0, n, SLICE):
        j = min(i + SLICE, n)
        rows = batch[: j - i]
        whole = min(j, n - 1) - i  # windows of this slice read straight from the clip
        rows[:whole, CONTEXT:] = audio[i * WINDOW : (i + whole) * WINDOW].reshape(whole, WINDOW)
        if whole < j - i:
            rows[whole, CONTEXT:] = last
        rows[0, :CONTEXT] = context
        rows[1:, :CONTEXT] = rows[:-1, -CONTEXT:]
        context = rows[-1, -CONTEXT:].copy()
        out, h, c = session.run(None, {"input": rows, "h": h, "c": c})
        probs[i:j] = np.asarray(out).reshape(-1)
    return probs


def get_speech_timestamps(
    audio: np.ndarray, vad_options: VadOptions | None = None
) -> list[dict[str, int]]:
    """faster-whisper's `get_speech_timestamps` (16 kHz): the same regions, in bounded memory."""
    return regions(speech_probabilities(audio), len(audio), vad_options or VadOptions())


def regions(probs: np.ndarray, length: int, options: VadOptions) -> list[dict[str, int]]:
    """Speech regions (start, end in samples) from the probabilities of a clip of `length`
    samples: faster-whisper 1.2's `get_speech_timestamps` after its model call, unchanged."""
    sampling_rate = 16000
    threshold = options.threshold
    neg_threshold = options.neg_threshold
    min_speech_samples = sampling_rate * options.min_speech_duration_ms / 1000
    speech_pad_samples = sampling_rate * options.speech_pad_ms / 1000
    max_speech_samples = (
        sampling_rate * options.max_speech_duration_s - WINDOW - 2 * speech_pad_samples
    )
    min_silence_samples = sampling_rate * options.min_silence_duration_ms / 1000
    min_silence_samples_at_max_speech = sampling_rate * 98 / 1000

    triggered = False
    speeches: list[dict[str, Any]] = []
    current_speech: dict[str, Any] = {}
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    # faster-whisper compares float32 probabilities in float32: the thresholds as float32 give
    # the same answers with the probabilities as Python floats (several times faster to walk)
    threshold, neg_threshold = float(np.float32(threshold)), float(np.float32(neg_threshold))

    # to save potential segment end (and tolerate some silence)
    temp_end = 0
    # to save potential segment limits in case of maximum segment size reached
    prev_end = next_start = 0

    for i, speech_prob in enumerate(probs.tolist()):
        if (speech_prob >= threshold) and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = WINDOW * i

        if (speech_prob >= threshold) and not triggered:
            triggered = True
            current_speech["start"] = WINDOW * i
            continue

        if triggered and (WINDOW * i) - current_speech["start"] > max_speech_samples:
            if prev_end:
                current_speech["end"] = prev_end
                speeches.append(current_speech)
                current_speech = {}
                # previously reached silence (< neg_thres) and is still not speech (< thres)
                if next_start < prev_end:
                    triggered = False
                else:
                    current_speech["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                current_speech["end"] = WINDOW * i
                speeches.append(current_speech)
                current_speech = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue

        if (speech_prob < neg_threshold) and triggered:
            if not temp_end:
                temp_end = WINDOW * i
            # condition to avoid cutting in very short silence
            if (WINDOW * i) - temp_end > min_silence_samples_at_max_speech:
                prev_end = temp_end
            if (WINDOW * i) - temp_end < min_silence_samples:
                continue
            else:
                current_speech["end"] = temp_end
                if (current_speech["end"] - current_speech["start"]) > min_speech_samples:
                    speeches.append(current_speech)
                current_speech = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                continue

    if current_speech and (length - current_speech["start"]) > min_speech_samples:
        current_speech["end"] = length
        speeches.append(current_speech)

    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - speech_pad_samples))
        if i != len(speeches) - 1:
            silence_duration = speeches[i + 1]["start"] - speech["end"]
            if silence_duration < 2 * speech_pad_samples:
                speech["end"] += int(silence_duration // 2)
                speeches[i + 1]["start"] = int(
                    max(0, speeches[i + 1]["start"] - silence_duration // 2)
                )
            else:
                speech["end"] = int(min(length, speech["end"] + speech_pad_samples))
                speeches[i + 1]["start"] = int(
                    max(0, speeches[i + 1]["start"] - speech_pad_samples)
                )
        else:
            speech["end"] = int(min(length, speech["end"] + speech_pad_samples))

    return speeches
