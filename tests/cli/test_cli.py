"""The CLI without HTTP: speak to a file, transcribe it back; doctor and settings answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

from ..conftest import decode, wer

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def _run(*args: str, timeout: int = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_SERVER__API_KEYS": "secret", **extra}  # local use needs no key
    return subprocess.run([*GATEWAY, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


@pytest.mark.slow
def test_speak_then_transcribe_beside_a_running_server(tmp_path: Path) -> None:
    """A server on this machine holds the Wyoming port (here: a socket listening on it, with the
    settings pointing there as they would for that server); local commands open no listener, so
    they still work (they died with `address already in use`)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        wyoming = {"GATEWAY_WYOMING__PORT": port, "GATEWAY_WYOMING__HOST": "127.0.0.1"}
        text = "The library opens early in the morning and closes late in the evening."
        out = tmp_path / "speech.mp3"
        spoken = _run("speak", text, "-o", str(out), "--voice", "jm_kumo", **wyoming)
        assert spoken.returncode == 0, spoken.stderr
        audio, rate = decode(out.read_bytes())
        assert rate == 24000 and len(audio) / rate > 2
        heard = _run("transcribe", str(out), "--format", "text", **wyoming)
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


@pytest.mark.slow
def test_local_commands_open_no_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gateway speak` and `transcribe` run the runtime and tasks in this process: nothing
    listens, HTTP or Wyoming (enabled, as a server on this machine has it), so a server that holds
    the ports cannot be in their way."""

    def listen(sock: socket.socket, *args: object) -> None:
        raise AssertionError(f"a local command listened on {sock.getsockname()}")

    monkeypatch.setenv("GATEWAY_WYOMING__ENABLED", "true")
    monkeypatch.setattr(socket.socket, "listen", listen)
    out = tmp_path / "hello.wav"
    assert main(["speak", "Hello, how are you today?", "-o", str(out)]) == 0
    assert main(["transcribe", str(out), "--format", "json"]) == 0
    assert wer("Hello, how are you today?", capsys.readouterr().out) <= 0.2
