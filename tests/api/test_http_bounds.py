"""HTTP connections are bounded (issue 29, item 8), over real sockets to a live server whose
limits are set low: connections past `max_connections` get a 503 and are closed at once, a
request head must arrive within `header_timeout_s`, a body that stalls or trickles gets 408, and
a client that leaves while its upload is being prepared takes the preparation back too."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import gateway.tasks.transcription as stt
from gateway.config import ServerSettings, Settings

from ..conftest import PASSAGE, LiveServer, encode, metric, spoken_16k

MAX_CONNECTIONS = 20
HEADER_TIMEOUT_S = 1.0
SLACK_S = 10.0  # a busy 2-core machine may answer late; a missing bound never answers at all


@pytest.fixture(scope="module")
def bounded() -> Iterator[LiveServer]:
    settings = Settings(server=ServerSettings(
        max_connections=MAX_CONNECTIONS, header_timeout_s=HEADER_TIMEOUT_S,
        body_read_timeout_s=1.0, body_timeout_s=3.0))  # fmt: skip
    with LiveServer(settings) as live:
        yield live


def _closed_by_server(sock: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing the socket within `timeout`; None if it is still
    open then."""
    got = b""
    deadline = time.monotonic() + timeout
    while True:
        readable, _, _ = select.select([sock], [], [], max(deadline - time.monotonic(), 0))
        if not readable:
            return None
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk


def _wait_until_idle_closed(live: LiveServer) -> None:
    deadline = time.monotonic() + HEADER_TIMEOUT_S + SLACK_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(live.url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server never served again")


def test_idle_connections_are_capped_and_closed(bounded: LiveServer) -> None:
    """Three times the cap of connections that send nothing: those past the cap get a 503 at
    once; the rest are closed when their head does not come; then a request is served."""
    socks = [
        socket.create_connection(("127.0.0.1", bounded.port)) for _ in range(3 * MAX_CONNECTIONS)
    ]
    try:
        time.sleep(0.5)
        answers = [_closed_by_server(s, 0.0) for s in socks]
        refused = [a for a in answers if a is not None]
        assert len(refused) >= 2 * MAX_CONNECTIONS, f"{len(refused)} closed at once"
        for answer in refused:
            if answer:  # a reset may win over the 503, never a hang
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 503"), answer[:200]
                assert json.loads(body)["error"]["code"] == "too_many_connections"
        # a request now is turned away with a clear 503, not left to time out
        r = httpx.get(bounded.url + "/health", timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "too_many_connections"
        held = [s for s, a in zip(socks, answers, strict=True) if a is None]
        t0 = time.monotonic()
        for s in held:
            assert _closed_by_server(s, HEADER_TIMEOUT_S + SLACK_S) == b"", "idle socket kept"
        assert time.monotonic() - t0 < HEADER_TIMEOUT_S + SLACK_S
    finally:
        for s in socks:
            s.close()
    _wait_until_idle_closed(bounded)


def test_a_trickled_head_is_closed(bounded: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        t0 = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if _closed_by_server(sock, 0.2) is not None:
                break
            assert time.monotonic() - t0 < HEADER_TIMEOUT_S + SLACK_S, "head still read"
        elapsed = time.monotonic() - t0
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < HEADER_TIMEOUT_S + SLACK_S, elapsed
    _wait_until_idle_closed(bounded)


def _post_head(path: str, length: int, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {length}\r\n\r\n").encode()  # fmt: skip


@pytest.mark.parametrize("pace_s,limit_s", [(None, 1.0), (0.5, 3.0)])
def test_a_stalled_or_trickled_body_gets_408(bounded: LiveServer, pace_s: float | None,
                                             limit_s: float) -> None:  # fmt: skip
    """A body that stops (no byte for `body_read_timeout_s`) or trickles in (a byte every
    0.5 s: never a long pause, but past `body_timeout_s` in all) gets 408 and is closed."""
    body = b'{"model": "tts-1", "voice": "alloy", "input": "' + b"a" * 400 + b'"}'
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        sock.sendall(_post_head("/v1/audio/speech", len(body)) + body[:10])
        t0 = time.monotonic()
        answer = None
        for byte in body[10:]:
            answer = _closed_by_server(sock, pace_s or limit_s + SLACK_S)
            if answer is not None or pace_s is None or time.monotonic() - t0 > limit_s + SLACK_S:
                break
            sock.sendall(bytes([byte]))
        elapsed = time.monotonic() - t0
    assert answer is not None, "the body is still being read"
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert json.loads(rest)["error"]["code"] == "request_timeout"
    assert limit_s * 0.9 <= elapsed < limit_s + SLACK_S, elapsed


def _multipart(audio: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
            "Content-Type: audio/mpeg\r\n\r\n").encode() + audio + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    return body, boundary


def test_client_gone_during_preparation_takes_it_back(
    bounded: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that closes once its long upload is being decoded: the decode under way ends on
    its thread, but the VAD and the job never start, and the request counts as 499."""
    windows: list[int] = []
    real = stt.plan_windows

    def counted(audio: Any, window_s: float, vad: Any = None) -> Any:  # the real VAD, counted
        windows.append(len(audio))
        return real(audio, window_s, vad)

    monkeypatch.setattr(stt, "plan_windows", counted)
    speech = spoken_16k([PASSAGE])[0]
    long = np.tile(speech, int(600 * 16000 / len(speech)))  # 10 min: seconds of decoding
    body, boundary = _multipart(encode(long, 16000, "mp3", "libmp3lame", "fltp"))
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
        f"form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    gw = bounded.gateway

    def ended(status: str | None = None) -> float:
        text = httpx.get(bounded.url + "/metrics").text
        labels = {"route": "/v1/audio/transcriptions"} | ({"status": status} if status else {})
        return metric(text, "gateway_http_requests_total", **labels)

    before, cancelled = ended(), ended("499")
    deadline = time.monotonic() + 120
    with socket.create_connection(("127.0.0.1", bounded.port)) as sock:
        sock.sendall(head + body)
        # leaving before the body is all read would be a 400; leave once the decode holds audio
        while gw.audio_budget.held_s == 0:
            assert time.monotonic() < deadline and ended() == before, "the decode never began"
            time.sleep(0.01)
    while ended() == before:
        assert time.monotonic() < deadline, "the request never ended"
        time.sleep(0.1)
    assert ended("499") == cancelled + 1
    while gw.audio_budget.held_s > 0:  # the decode's thread gives its hold back as it ends
        assert time.monotonic() < deadline, "the decode's audio is still held"
        time.sleep(0.1)
    time.sleep(1.0)  # what would still start, starts now
    assert windows == [], "the VAD ran for a client that had gone"
    assert gw.scheduler.queued() == 0 and not any(gw.scheduler.snapshot().busy.values())


def test_serve_raises_a_low_open_file_limit_to_what_the_caps_need() -> None:
    """At a soft limit of 512 (1024 is common) the HTTP cap of 1000 idle connections would use up
    the descriptor table before it refuses anyone; `gateway serve` raises the soft limit toward
    the hard one first. Run in a child whose soft limit is lowered before it starts."""
    import resource
    import subprocess
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = Settings()
    needed = settings.server.max_connections + settings.wyoming.max_connections + 256
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-file limit here ({hard}) is below {needed}")
    code = (
        "import resource; from gateway.config import Settings; "
        "from gateway.http_server import raise_fd_limit; "
        "print(raise_fd_limit(Settings()), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    told, now = (int(x) for x in done.stdout.split())
    assert told == now >= needed, done.stdout
