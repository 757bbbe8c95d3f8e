"""Writing test media with PyAV."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def mux(out: Any, stream: Any, frames: Iterable[Any]) -> None:
    """Encode `frames` on `stream` into the container `out`, then flush the encoder: without
    the flush an encoder with look-ahead (MP3, AAC, MPEG-4) drops the last packets."""
    for frame in frames:
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
