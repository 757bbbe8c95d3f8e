"""A transcription's work units, made from its windows as they are taken.

A window cut by the VAD joins its speech regions into audio of its own. Joined for every window
when the job was planned, they were a second copy of the upload's speech held until the response
ended: as much again as the array for an upload that is mostly speech. Made as the job takes
them, only the windows in flight are copies; the rest stay offsets into the clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import overload

import numpy as np

from ..audio.decode import TARGET_RATE
from ..engines.whisper import WHISPER_INPUT, TranscribeUnit, Window


class WindowUnits(Sequence[TranscribeUnit]):
    """A clip's units, one per window, each made (its audio joined) when it is taken: take each
    once, when it is about to run, and let it go with its result."""

    def __init__(self, template: TranscribeUnit, clip: np.ndarray, windows: list[Window],
                 probe: int) -> None:  # fmt: skip
        self.template = template
        self.clip = clip
        self.windows = windows
        self.probe = probe  # windows whose speech the first one carries for detection

    def __len__(self) -> int:
        return len(self.windows)

    @overload
    def __getitem__(self, i: int) -> TranscribeUnit: ...
    @overload
    def __getitem__(self, i: slice) -> list[TranscribeUnit]: ...
    def __getitem__(self, i: int | slice) -> TranscribeUnit | list[TranscribeUnit]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        win = self.windows[i]
        # Windows cut by the VAD are decoded as cut (no second VAD pass); a whole short clip
        # runs it.
        unit = replace(
            self.template,
            audio=win.audio(self.clip),
            offset_s=win.start / TARGET_RATE,
            pieces=tuple((a, b - a) for a, b in win.pieces),
            vad_filter=self.template.vad_filter and not win.pieces,
        )
        if i == 0 and self.probe > 1:
            # detection hears the speech of the first windows, not the first alone
            heard = [w.audio(self.clip) for w in self.windows[: self.probe]]
            probe = np.concatenate(heard)[: self.probe * WHISPER_INPUT]
            unit = replace(unit, probe=probe)
        return unit
