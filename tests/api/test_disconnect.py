"""A client that closes its socket while its request waits is cancelled (issue #10, item 14):
over a real socket to a live uvicorn server, the queued unit is taken back (its queue place
freed, never run), the slot it would have used serves the next request, and
`gateway_requests_cancelled_total` counts it.

Whisper is a stand-in whose unit blocks until the test releases it, so "queued behind a running
unit" is a state the test sets up, not a race against a duration."""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any

import httpx

from gateway.config import Settings
from gateway.engines.whisper import TranscribeResult

from ..conftest import LiveServer, metric, tone_wav
from ..support.wait import wait_until


def _multipart(port: int, wav: bytes, prompt: str) -> bytes:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n{prompt}\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n",
    ]
    body = "".join(parts).encode() + wav + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def test_client_closing_its_socket_cancels_the_queued_request() -> None:
    with LiveServer(Settings()) as live:
        gw = live.gateway
        engine = gw.models["whisper-base"].engine
        release = threading.Event()
        ran: list[str | None] = []

        def run(_handle: Any, unit: Any) -> Any:
            ran.append(unit.prompt)
            if unit.prompt == "first":
                assert release.wait(120), "never released"
            return TranscribeResult([], "en")

        engine.load = lambda device: object()
        engine.run = run
        wav = tone_wav()
        results: dict[str, httpx.Response] = {}

        def post(name: str) -> None:
            results[name] = httpx.post(live.url + "/v1/audio/transcriptions", timeout=120,
                                       files={"file": ("a.wav", wav)},
                                       data={"model": "whisper-1", "prompt": name})  # fmt: skip

        first = threading.Thread(target=post, args=("first",))
        first.start()
        wait_until(lambda: ran == ["first"], "the first unit running")

        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(_multipart(live.port, wav, "doomed"))
        wait_until(lambda: gw.scheduler.queued() == 1, "the doomed request queued")
        sock.close()  # the client goes away while its unit waits
        wait_until(lambda: gw.scheduler.queued() == 0, "the queued unit taken back")

        metrics = httpx.get(live.url + "/metrics").text
        assert metric(metrics, "gateway_requests_cancelled_total",
                       level="interactive", engine="whisper-base") == 1  # fmt: skip

        release.set()
        first.join(120)
        assert results["first"].status_code == 200, results["first"].text
        # the slot the doomed unit would have taken serves the next request at once
        post("next")
        assert results["next"].status_code == 200
        assert ran == ["first", "next"], ran  # the cancelled unit never ran
        assert not any(gw.scheduler.snapshot().busy.values())
