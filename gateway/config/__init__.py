"""The gateway's settings: one tree (`Settings`, in settings.py) read from the environment, each
section in a module of its own. Other code imports the names below from `gateway.config`."""

from .engines import KokoroSettings, Placement, WhisperSettings
from .lists import StrList
from .models import ModelsSettings
from .realtime import RealtimeSettings
from .scheduler import QueuePolicy, SchedulerSettings
from .server import ServerSettings
from .settings import Settings, env_vars
from .wyoming import WyomingSettings

__all__ = [
    "KokoroSettings",
    "ModelsSettings",
    "Placement",
    "QueuePolicy",
    "RealtimeSettings",
    "SchedulerSettings",
    "ServerSettings",
    "Settings",
    "StrList",
    "WhisperSettings",
    "WyomingSettings",
    "env_vars",
]
