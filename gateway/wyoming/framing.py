"""Reading Wyoming frames with bounds. The library's `async_read_event` trusts `data_length` and
`payload_length` and reads whatever they say; a peer could make the server wait on or buffer
gigabytes. The header line is checked here first (a JSON object, a string type, lengths that are
integers within the bounds), then the frame is handed to the library's own parser."""

from __future__ import annotations

import asyncio
import json

from wyoming.event import Event, async_read_event

MAX_HEADER_BYTES = 64 * 1024  # the StreamReader's own line limit: a longer line is malformed
MAX_DATA_BYTES = 1 << 20  # extra JSON data: synthesize text is bounded by max_input_chars anyway
MAX_PAYLOAD_BYTES = 1 << 20  # one audio chunk: 1 s of 48 kHz stereo 32-bit audio is 384 KiB


class FrameError(Exception):
    """A frame that cannot be read: the connection is closed."""


def _length(header: dict, key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise FrameError(f"{key} must be a non-negative integer")
    if value > limit:
        raise FrameError(f"{key} {value} is over the limit of {limit} bytes")
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event; None at the end of the stream; raises FrameError for a malformed or
    oversized frame (the stream is then out of step, so the caller closes it)."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError):
        raise FrameError(f"header line over {MAX_HEADER_BYTES} bytes") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # the peer closed in the middle of a header
    try:
        header = json.loads(line)
    except ValueError:
        raise FrameError("header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise FrameError("header must be a JSON object with a string `type`")
    if not isinstance(header.get("data", {}), dict):
        raise FrameError("`data` must be a JSON object")
    data_len = _length(header, "data_length", MAX_DATA_BYTES)
    payload_len = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        body = await reader.readexactly(data_len + payload_len)
    except asyncio.IncompleteReadError:
        return None
    if data_len:
        try:
            extra = json.loads(body[:data_len])
        except ValueError:
            raise FrameError("data is not JSON") from None
        if not isinstance(extra, dict):
            raise FrameError("data must be a JSON object")
    # The bounds hold: let the library parse the frame, so its format stays its own.
    checked = asyncio.StreamReader()
    checked.feed_data(line + body)
    checked.feed_eof()
    event = await async_read_event(checked)
    if event is None:
        raise FrameError("malformed frame")
    return event
