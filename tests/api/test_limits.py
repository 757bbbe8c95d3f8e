"""Configured limits answer 400/413 in the OpenAI shape before any inference."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import ServerSettings, Settings

from ..conftest import encode

TWO_S = {"type": "duration", "seconds": 2.0}  # whisper-1's usage of the 2 s clip


def test_audio_longer_than_max_audio_s_is_refused() -> None:
    settings = Settings(server=ServerSettings(max_audio_s=5))
    wav = encode(np.zeros(16000 * 8, np.float32), 16000, "wav", "pcm_s16le", "s16")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                        data={"model": "whisper-1"})  # fmt: skip
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["param"] == "file" and "longer than the limit of 5 s" in err["message"]
        short = encode(np.zeros(16000 * 2, np.float32), 16000, "wav", "pcm_s16le", "s16")
        ok = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", short)},
                         data={"model": "whisper-tiny.en"})  # fmt: skip
        assert ok.status_code == 200 and ok.json() == {"text": "", "usage": TWO_S}
