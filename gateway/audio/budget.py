"""The decoded audio that uploads hold at once, in samples, under one cap.

The scheduler's queue counts work units, and a unit of a 4-hour upload is a 30 s window of an
array of 0.9 GiB: a queue of 16 batch jobs could hold 15 GiB of samples. Each upload takes a
`Hold` before it decodes and grows it with its array; the hold is given back when the audio
is dropped (the caller ties it to the object that owns the samples).

An upload holds more than its array at its peak, and the hold counts it (`beside`), in samples
of 4 bytes so that the cap bounds memory: its encoded bytes (held until it is cut into windows)
and the windows in flight, each joined from its speech regions and then padded to Whisper's
input, with the first one's language probe. The decoder writes into the array itself and the
VAD runs over slices of 8 s (engines/vad.py), so they add nothing that grows with the upload.
tests/api/test_upload_peak.py measures a running server against it.
"""

from __future__ import annotations

import threading

from .decode import TARGET_RATE


def beside(encoded_bytes: int, windows: int, window_samples: int) -> int:
    """Samples an upload holds beside its array at its peak: its bytes, and `windows` windows
    of `window_samples` (the windows in flight twice, joined and padded, plus the probe's)."""
    return encoded_bytes // 4 + windows * window_samples


class AudioBudgetFull(Exception):
    """Taking these samples would pass the cap while other uploads hold audio."""


class AudioBudget:
    def __init__(self, cap_s: float) -> None:
        self.cap = int(cap_s * TARGET_RATE) if cap_s else None  # None: no cap
        self.held = 0  # samples, all holds together
        self.peak = 0
        self._lock = threading.Lock()  # decoders take samples from their worker threads

    @property
    def held_s(self) -> float:
        return self.held / TARGET_RATE

    def hold(self) -> Hold:
        return Hold(self)

    def _take(self, hold: Hold, n: int) -> None:
        with self._lock:
            if hold.released:
                raise AudioBudgetFull("the upload was given up")
            others = self.held - hold.samples
            # One upload alone always passes (up to `max_audio_s`), so a cap below the
            # longest upload slows such uploads down instead of refusing them for ever.
            if self.cap is not None and others > 0 and self.held + n > self.cap:
                raise AudioBudgetFull(
                    f"uploads hold {self.held / TARGET_RATE:.0f} s of decoded audio; this one "
                    f"would pass the limit of {self.cap / TARGET_RATE:.0f} s; retry later"
                )
            self.held += n
            hold.samples += n
            self.peak = max(self.peak, self.held)

    def _give(self, hold: Hold, n: int) -> None:
        with self._lock:
            n = min(n, hold.samples)
            self.held -= n
            hold.samples -= n


class Hold:
    """One upload's share of the budget."""

    def __init__(self, budget: AudioBudget) -> None:
        self.budget = budget
        self.samples = 0
        self.released = False  # then it takes nothing more (a decode still running stops)

    def take(self, n: int) -> None:
        """Add n samples; raises AudioBudgetFull (and takes nothing) past the cap."""
        self.budget._take(self, n)

    def keep(self, n: int) -> None:
        """Shrink the hold to n samples (the array was cut to the decoded audio)."""
        self.budget._give(self, self.samples - n)

    def release(self) -> None:
        """Give everything back for good; called again, it does nothing."""
        with self.budget._lock:
            self.released = True
        self.budget._give(self, self.samples)
