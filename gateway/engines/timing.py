"""Phoneme timings of a Kokoro unit: the result type and the map from the model's token
durations to the characters of the unit's phoneme string.

The timed model (registry/timed.py) reports, besides the audio, how many frames each token
lasts; kokoro-onnx turns them into token boundaries in samples (after its silence trim). Here
they become one boundary per phoneme character, the unit a caller maps words onto.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx


@dataclass(frozen=True)
class TimedAudio:
    """A timed unit's result.

    `audio`: the unit's float32 samples at 24 kHz, exactly what an untimed run returns (leading
    silence trimmed, `unit.pause_s` of silence appended).
    `edges`: int64 sample offsets into `audio`, len(unit.phonemes) + 1 of them, non-decreasing;
    phoneme character i of `unit.phonemes` is spoken in audio[edges[i]:edges[i + 1]]. Characters
    the tokenizer drops have zero width. edges[-1] is where the last phoneme ends, at most
    len(audio) - the appended pause. None when the lane's model file reports no durations (a
    user's own GPU file without them)."""

    audio: np.ndarray
    edges: np.ndarray | None


def char_edges(phonemes: str, token_edges: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
    """Token boundaries (kokoro-onnx's: index i is where token i starts, the trailing pad's
    start and end last) -> one boundary per phoneme character, dropped characters zero-width."""
    known = np.fromiter((ch in vocab for ch in phonemes), dtype=bool, count=len(phonemes))
    tokens_before = np.concatenate([[0], np.cumsum(known)])
    return np.asarray(token_edges, dtype=np.int64)[tokens_before]


def has_durations(model: Path) -> bool:
    """Whether an ONNX model file has the `duration` output (ours, or a user's own export)."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return any(o.name == "duration" for o in graph.output)
