"""The CLI without HTTP: speak to a file, transcribe it back; doctor and settings answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import decode, wer

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_SERVER__API_KEYS": "secret"}  # local use needs no key
    return subprocess.run([*GATEWAY, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


@pytest.mark.slow
def test_speak_then_transcribe(tmp_path: Path) -> None:
    text = "The library opens early in the morning and closes late in the evening."
    out = tmp_path / "speech.mp3"
    spoken = _run("speak", text, "-o", str(out), "--voice", "jm_kumo")
    assert spoken.returncode == 0, spoken.stderr
    audio, rate = decode(out.read_bytes())
    assert rate == 24000 and len(audio) / rate > 2
    heard = _run("transcribe", str(out), "--format", "text")
    assert heard.returncode == 0, heard.stderr
    assert wer(text, heard.stdout) <= 0.15, heard.stdout


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = _run("speak", "hello", "-o", str(tmp_path / "x.mp3"), "--voice", "nobody")
    assert bad.returncode != 0
    assert "error 400" in bad.stderr and "voice 'nobody' is not installed" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_doctor_and_settings() -> None:
    doctor = _run("doctor")
    assert doctor.returncode == 0
    assert "NVIDIA driver (NVML)" in doctor.stdout and "model kokoro: runs on: CPU" in doctor.stdout
    settings = _run("settings", "--markdown")
    assert "| `GATEWAY_WHISPER__COMPUTE_TYPE` | `int8` |" in settings.stdout
