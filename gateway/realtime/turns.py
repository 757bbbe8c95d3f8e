"""Turn detection (`server_vad`): faster-whisper's Silero VAD fed append by append. The model
keeps its LSTM state and the 64-sample context between calls, so feeding it piece by piece
gives the same probabilities as one pass over the whole stream, at a cost bounded by the size
of each append. Runs in a worker thread (see `Session`), never on the event loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidRequest
from .codecs import RATE

WINDOW = 512  # samples per VAD probability at 16 kHz (32 ms)
CONTEXT = 64


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    @property
    def prefix_samples(self) -> int:
        return self.prefix_padding_ms * RATE // 1000

    @property
    def silence_samples(self) -> int:
        return self.silence_duration_ms * RATE // 1000


def vad_params(value: dict[str, Any], param: str) -> VadParams:
    """OpenAI's `server_vad` fields (`semantic_vad` is run as `server_vad` with its defaults)."""
    kind = value.get("type", "server_vad")
    if kind == "semantic_vad":
        return VadParams()
    if kind != "server_vad":
        raise InvalidRequest(f"unsupported turn_detection type {kind!r}; use server_vad, "
                             "semantic_vad or null", f"{param}.type", "invalid_value")  # fmt: skip
    defaults = VadParams()
    out: dict[str, Any] = {}
    for name, lo, hi in (("threshold", 0.0, 1.0), ("prefix_padding_ms", 0, 10000),
                         ("silence_duration_ms", 0, 10000)):  # fmt: skip
        v = value.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise InvalidRequest(f"{name} must be a number from {lo} to {hi}, not {v!r}",
                                 f"{param}.{name}", "invalid_value")  # fmt: skip
        out[name] = float(v) if name == "threshold" else int(v)
    return VadParams(**{**defaults.__dict__, **out})


class StreamingVad:
    """Silero speech probabilities, one per 512 samples, for audio fed in pieces of any size."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model  # its ONNX session, shared and thread-safe

        self.session = get_vad_model().session
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(CONTEXT, np.float32)
        self.pending = np.zeros(0, np.float32)

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        x = np.concatenate([self.pending, samples]) if len(self.pending) else samples
        n = len(x) // WINDOW
        self.pending = x[n * WINDOW :].copy()
        if not n:
            return np.zeros(0, np.float32)
        windows = x[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.concatenate([self.context[None, :], windows[:-1, -CONTEXT:]])
        self.context = windows[-1, -CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32)
        out, self.h, self.c = self.session.run(None, {"input": batch, "h": self.h, "c": self.c})
        return np.asarray(out, np.float32).reshape(-1)


@dataclass
class Detector:
    """Speech starts at the first window at or over `threshold` and stops once the probability
    has stayed under it (below `threshold - 0.15` at first, as Silero's own splitter does) for
    `silence_duration_ms`. Positions are samples at 16 kHz since the session began."""

    params: VadParams
    vad: StreamingVad = field(default_factory=StreamingVad)
    position: int = 0  # samples the VAD has judged
    speech_start: int | None = None
    silence_from: int | None = None

    def feed(self, samples: np.ndarray) -> list[tuple[str, int]]:
        """("start" | "stop", position) for each edge in these samples."""
        edges: list[tuple[str, int]] = []
        neg = max(self.params.threshold - 0.15, 0.01)
        for p in self.vad.probabilities(samples):
            start, self.position = self.position, self.position + WINDOW
            if self.speech_start is None:
                if p >= self.params.threshold:
                    self.speech_start, self.silence_from = start, None
                    edges.append(("start", start))
                continue
            if p >= self.params.threshold:
                self.silence_from = None
            elif self.silence_from is None and p < neg:
                self.silence_from = start
            silent = self.silence_from is not None and self.position - self.silence_from
            if silent is not False and silent >= self.params.silence_samples:
                self.speech_start = self.silence_from = None
                edges.append(("stop", self.position))
        return edges

    def reset(self) -> None:
        """A turn ended by other means (a commit, a clear, the buffer limit)."""
        self.speech_start = self.silence_from = None
