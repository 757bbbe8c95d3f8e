"""The OpenAI Realtime API's transcription sessions (`/v1/realtime?intent=transcription`): the
protocol (events of both schemas, audio formats, turn detection, limits) as a front door of its
own; the WebSocket route itself is api/realtime.py. Reaches the models only through tasks/."""

from .session import PATH, PROTOCOL, Channel, Realtime, Session

__all__ = ["PATH", "PROTOCOL", "Channel", "Realtime", "Session"]
