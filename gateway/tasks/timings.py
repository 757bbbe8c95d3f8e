"""Word timings of a timed speech plan: each unit's phoneme edges -> the written words it speaks,
in seconds from the start of the audio a client plays.

Unit u's audio starts where the units before it end, their end pauses included (each unit's
audio carries its own pause); `speed` is already in the edges. `delay_samples` is the silence a
decoder puts before the first sample (a compressed format's encoder delay, see
`audio.encode.decoder_delay`).
"""

from __future__ import annotations

from ..engines.timing import TimedAudio
from ..text.words import word_times
from .speech import SpeechPlan


class TimingsUnavailable(RuntimeError):
    """The lane that ran a unit has a model file without phoneme durations (a user's own GPU
    file): the audio is there, its word times are not."""


class WordClock:
    """Fed each unit's TimedAudio in order, gives the words that unit completes."""

    def __init__(self, plan: SpeechPlan, delay_samples: int = 0) -> None:
        assert plan.words is not None, "word timings need a plan made with timed=True"
        self.words = plan.words
        self.sample_rate = plan.sample_rate
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
        pieces = self.pieces[self.unit]
        times = word_times(
            [pieces], self.words.words, [result.edges], [self.samples], self.sample_rate
        )
        done = []
        for (w, _, _), time in zip(pieces, times, strict=True):
            if w in self.open:
                self.open[w]["end"] = time["end"]
            else:
                self.open[w] = time
            if self.last_unit[w] == self.unit:
                done.append(self.open.pop(w))
        self.samples += len(result.audio)
        self.unit += 1
        return done
