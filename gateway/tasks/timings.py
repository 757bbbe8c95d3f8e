"""Word timings of a timed speech plan: each unit's phoneme edges -> the written words it speaks,
in seconds from the start of the audio a client plays.

Unit u's audio starts where the units before it end, their end pauses included (each unit's
audio carries its own pause); `speed` is already in the edges. `delay_samples` is the silence a
decoder puts before the first sample (a compressed format's encoder delay, see
`audio.encode.decoder_delay`).

Kokoro's durations are the frames its decoder was given per phoneme, not where the sound is: the
silence before a sentence mark lands inside the last vowel's frames (measured: a sentence's last
word ran 0.25 s into the pause after it), and a word after a pause can start in silence. So a
word's span is snapped to its own sound: from the first to the last 10 ms frame within its edges
no quieter than 40 dB under the unit's loudest frame (a span with no such frame is kept whole).
"""

from __future__ import annotations

import numpy as np

from ..engines.timing import TimedAudio
from .speech import SpeechPlan

FRAME_S = 0.01
SILENCE_DB = 40.0  # under the unit's loudest frame


class TimingsUnavailable(RuntimeError):
    """The lane that ran a unit has a model file without phoneme durations (a user's own GPU
    file): the audio is there, its word times are not."""


def loud_frames(audio: np.ndarray, hop: int) -> np.ndarray:
    """Per `hop`-sample frame of `audio`, whether it is no quieter than SILENCE_DB under the
    loudest (the last partial frame counts as a frame)."""
    padded = np.pad(audio, (0, -len(audio) % hop)).reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((padded.astype(np.float64) ** 2).mean(axis=1)) + 1e-9)
    return np.asarray(level >= level.max() - SILENCE_DB)


def snap(loud: np.ndarray, hop: int, start: int, end: int) -> tuple[int, int]:
    """A span of samples narrowed to the sound inside it."""
    first, last = start // hop, -(-end // hop)
    inside = np.flatnonzero(loud[first:last])
    if not len(inside):
        return start, end
    return max(start, (first + inside[0]) * hop), min(end, (first + inside[-1] + 1) * hop)


class WordClock:
    """Fed each unit's TimedAudio in order, gives the words that unit completes."""

    def __init__(self, plan: SpeechPlan, delay_samples: int = 0) -> None:
        assert plan.words is not None, "word timings need a plan made with timed=True"
        self.words = plan.words.words
        self.sample_rate = plan.sample_rate
        self.hop = int(plan.sample_rate * FRAME_S)
        self.pieces = plan.words.unit_pieces([u.phonemes for u in plan.units])
        # a word a unit boundary cuts is given out with the unit that holds its end
        self.last_unit = {w: u for u, pieces in enumerate(self.pieces) for w, _, _ in pieces}
        self.samples = delay_samples
        self.unit = 0
        self.open: dict[int, dict[str, float | str]] = {}

    @property
    def seconds(self) -> float:
        """Audio so far (the delay included)."""
        return self.samples / self.sample_rate

    def add(self, result: TimedAudio) -> list[dict[str, float | str]]:
        if result.edges is None:
            raise TimingsUnavailable(
                "the lane that ran this speech has a model without phoneme durations"
            )
        loud = loud_frames(result.audio, self.hop)
        done = []
        for w, a, b in self.pieces[self.unit]:
            start, end = snap(loud, self.hop, int(result.edges[a]), int(result.edges[b]))
            s = round((self.samples + start) / self.sample_rate, 3)
            e = round((self.samples + end) / self.sample_rate, 3)
            if w in self.open:
                self.open[w]["end"] = e
            else:
                self.open[w] = {"word": self.words[w], "start": s, "end": e}
            if self.last_unit[w] == self.unit:
                done.append(self.open.pop(w))
        self.samples += len(result.audio)
        self.unit += 1
        return done
