"""Whisper's batched decode, clip by clip (the GPU lane's path).

faster-whisper's `BatchedInferencePipeline` decodes clips of one array in batches and yields one
flat stream of segments, timed in the array. A segment's times cannot say which clip it came
from: Whisper pads every clip to 30 s, and its timestamps may run past a short clip's end, into
the next clip's time. What the pipeline's `forward` returns is structured: one list of segments
per clip, in the order of the clips it was given. That structure, kept here, is what assigns a
segment to its clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.transcribe import Segment, Word, get_compression_ratio

from ..audio.decode import TARGET_RATE as SAMPLE_RATE

# faster-whisper's `transcribe` defaults: a decode fails (and is tried again at a higher
# temperature) on a compression ratio above this (a repetition loop) ...
COMPRESSION_RATIO_MAX = 2.4
# ... or an average log probability below this, unless Whisper thinks nothing is said
# (no-speech probability above NO_SPEECH_MIN): then the window is silence and gives no text.
LOG_PROB_MIN = -1.0
NO_SPEECH_MIN = 0.6


@dataclass
class Decoded:
    """One clip's decode: its segments (timed in seconds of the clip's own audio) and the
    scores faster-whisper's sequential decode judges a decode by."""

    segments: list[Segment]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_MIN and self.avg_logprob < LOG_PROB_MIN

    @property
    def failed(self) -> bool:
        """As `generate_with_fallback` decides whether to try the next temperature."""
        poor = self.compression_ratio > COMPRESSION_RATIO_MAX or self.avg_logprob < LOG_PROB_MIN
        return poor and not self.silent


class _ClipPipeline(BatchedInferencePipeline):
    """Keeps what `forward` returns: per clip of a batch, its offset and its segments."""

    def __init__(self, model: WhisperModel) -> None:
        super().__init__(model)
        self.clips: list[tuple[float, list[dict[str, Any]]]] = []

    def forward(self, features: Any, tokenizer: Any, chunks_metadata: Any, options: Any) -> Any:
        out = super().forward(features, tokenizer, chunks_metadata, options)
        if len(out) != len(chunks_metadata):
            raise RuntimeError(f"{len(out)} clips decoded of {len(chunks_metadata)}")
        self.clips += [
            (meta["offset"], segs) for meta, segs in zip(chunks_metadata, out, strict=True)
        ]
        return out


def _clip_segment(d: dict[str, Any], offset: float, temperature: float) -> Segment:
    """A segment of the pipeline (timed in the joined array) timed in its clip's audio."""
    words = d.get("words")
    return Segment(
        id=0,
        seek=0,
        start=round(d["start"] - offset, 3),
        end=round(d["end"] - offset, 3),
        text=d["text"],
        tokens=d["tokens"],
        avg_logprob=d["avg_logprob"],
        compression_ratio=d["compression_ratio"],
        no_speech_prob=d["no_speech_prob"],
        words=None
        if words is None
        else [
            Word(
                start=w["start"] - offset,
                end=w["end"] - offset,
                word=w["word"],
                probability=w["probability"],
            )
            for w in words
        ],  # fmt: skip
        temperature=temperature,
    )


def decode_clips(
    model: WhisperModel,
    clips: list[np.ndarray],
    batch_size: int,
    *,
    temperature: float,
    **options: Any,
) -> tuple[list[Decoded], str, float]:
    """Decode each clip (16 kHz, at most 30 s) once, `batch_size` at a time: the decodes, in the
    clips' order, and the language (given in `options`, or detected on the first clip) with its
    probability. `options`: `transcribe`'s language, task, initial_prompt, word_timestamps,
    beam_size."""
    # Each clip starts on a whole second of the joined array, so the pipeline's clip offsets and
    # its `seek` (in 10 ms frames, which word times are counted from) are exact: a clip's times
    # come back by subtracting its offset. The zeros between clips are never decoded.
    starts, at = [], 0
    for clip in clips:
        starts.append(at)
        at += ceil(len(clip) / SAMPLE_RATE) * SAMPLE_RATE
    audio = np.zeros(max(at, 1), np.float32)
    for start, clip in zip(starts, clips, strict=True):
        audio[start : start + len(clip)] = clip
    if options.get("language") is None and not model.model.is_multilingual:
        options = {**options, "language": "en"}
    if options.get("language") is None:
        # detected on the first clip alone, not on whatever follows it in this batch
        language, probability, _ = model.detect_language(clips[0])
        options = {**options, "language": language}
    else:
        probability = 1.0
    pipeline = _ClipPipeline(model)
    segments, _ = pipeline.transcribe(
        audio,
        clip_timestamps=[
            {"start": start // SAMPLE_RATE, "end": (start + len(clip)) / SAMPLE_RATE}
            for start, clip in zip(starts, clips, strict=True)
        ],
        without_timestamps=False,
        temperature=temperature,
        batch_size=batch_size,
        **options,
    )
    for _ in segments:  # a generator: decoding happens as it is read, in this thread
        pass
    if len(pipeline.clips) != len(clips):
        raise RuntimeError(f"{len(pipeline.clips)} clips decoded of {len(clips)}")
    decoded = []
    for offset, segs in pipeline.clips:
        text = "".join(d["text"] for d in segs)
        first = segs[0] if segs else {"avg_logprob": 0.0, "no_speech_prob": 0.0}
        decoded.append(
            Decoded(
                segments=[_clip_segment(d, offset, temperature) for d in segs],
                avg_logprob=first["avg_logprob"],  # one decode per clip: its scores on each
                no_speech_prob=first["no_speech_prob"],
                compression_ratio=get_compression_ratio(text.strip()) if text.strip() else 0.0,
            )
        )
    return decoded, options["language"], probability
