"""The one settings tree for the whole gateway, its sections each in a module of their own.

Every field is read from the environment with the prefix ``GATEWAY_`` and ``__`` between
sections, e.g. ``GATEWAY_WHISPER__COMPUTE_TYPE=int8`` or
``GATEWAY_SCHEDULER__BATCH__MAX_QUEUE_SIZE=16``. A ``.env`` file in the working directory is
read too. The README's settings table is generated from these descriptions
(``gateway settings --markdown``), so the text in each section's module is the documentation. A setting that is a list
(`lists.StrList`) takes a comma-separated value, ``GATEWAY_MODELS__PRELOAD=whisper-base,kokoro``,
or a JSON list, ``GATEWAY_MODELS__PRELOAD='["whisper-base","kokoro"]'``.
"""

from __future__ import annotations

import logging
import os
from enum import Enum

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .engines import KokoroSettings, WhisperSettings
from .models import ModelsSettings
from .realtime import RealtimeSettings
from .scheduler import SchedulerSettings
from .server import ServerSettings
from .wyoming import WyomingSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    kokoro: KokoroSettings = Field(default_factory=KokoroSettings)
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)

    def api_keys(self) -> list[str]:
        keys = list(self.server.api_keys)
        path = self.server.api_keys_file
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                # An optional Kubernetes Secret that is not there: no keys from the file.
                logging.getLogger(__name__).warning("API key file %s does not exist", path)
                text = ""
            keys += [line.strip() for line in text.splitlines() if line.strip()]
        return keys

    def cpu_threads(self, family: str) -> int:
        """Threads per unit for a family on CPU, so that foreground slots x threads <= cores."""
        sched = self.scheduler
        section: KokoroSettings | WhisperSettings = getattr(self, family)  # the family's section
        configured = section.cpu_threads
        per_slot = max(1, sched.cores // sched.cpu_slots)
        return min(configured, per_slot) if configured else per_slot


def env_vars() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every leaf setting, for docs and manifest checks."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], default: BaseModel | None, prefix: str) -> None:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            value = (
                getattr(default, name)
                if default is not None
                else field.get_default(call_default_factory=True)
            )
            if isinstance(value, BaseModel):
                walk(type(value), value, env + "__")
                continue
            if isinstance(value, Enum):
                value = value.value
            if isinstance(value, list):
                value = ",".join(value)  # shown in the comma form users set, "" when empty
            if name == "cores" and model is SchedulerSettings:
                value = 0  # resolved from the machine at start-up
            shown = '""' if value == "" else str(value).replace(os.path.expanduser("~"), "~")
            rows.append((env, shown, field.description or ""))

    walk(Settings, None, "GATEWAY_")
    return rows
