"""Security: API keys (env var or mounted file), 401s in the OpenAI shape, open listing and probe
routes, keys never logged, no path traversal through model / voice / language ids, CORS off
unless configured, and the body-size limit enforced before the body is read."""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import ServerSettings, Settings
from gateway.logs import JsonFormatter
from gateway.registry.store import ModelError

from ..conftest import LiveServer  # noqa: E402
from ..support.errors import assert_openai_error
from ..support.process import GatewayProcess

KEY = "sk-test-9f8e7d6c5b4a"
KEY2 = "second-key-from-env"
FILE_KEY = "key-from-mounted-secret"
PROTECTED = [
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
    ("GET", "/v1/scheduler"),
    # they show traffic per route, queue depth, the whole API: open only by `open_paths`
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/api/ps"),
]
# the HTML pages hold no data (their scripts send the key they are given), so they stay open
OPEN = ["/v1/models", "/v1/models/tts-1", "/v1/audio/models", "/v1/audio/voices", "/health",
        "/ready", "/status", "/realtime"]  # fmt: skip


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Keys from the env var (two, comma-separated) and from a mounted file (one per line)."""
    secret = tmp_path_factory.mktemp("secret") / "api-keys"
    secret.write_text(f"\n  {FILE_KEY}  \n\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("GATEWAY_SERVER__API_KEYS", f"{KEY}, {KEY2}")
    mp.setenv("GATEWAY_SERVER__API_KEYS_FILE", str(secret))
    settings = Settings()
    mp.undo()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _call(client: TestClient, method: str, path: str, headers: dict | None = None) -> Any:
    if path.endswith("/speech"):
        return client.request(
            method, path, headers=headers, json={"model": "tts-1", "voice": "alloy", "input": "Hi."}
        )
    if path.startswith("/v1/audio/tr"):
        return client.request(method, path, headers=headers, data={"model": "whisper-1"},
                              files={"file": ("a.wav", b"not audio")})  # fmt: skip
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {KEY[:-1]}", f"Bearer {KEY}x",
                                  f"Bearer {KEY.upper()}", f"Basic {KEY}", "Bearer", "Bearer  ",
                                  KEY, f"Token {KEY}"])  # fmt: skip
def test_missing_or_wrong_key_is_401(keyed: TestClient, method: str, path: str,
                                     auth: str | None) -> None:  # fmt: skip
    r = _call(keyed, method, path, {"Authorization": auth} if auth is not None else None)
    err = assert_openai_error(r, 401)
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    assert r.headers["www-authenticate"] == "Bearer"
    assert KEY not in r.text and KEY[:-1] not in r.text


@pytest.mark.parametrize("key", [KEY, KEY2, FILE_KEY])
def test_each_configured_key_is_accepted(keyed: TestClient, key: str) -> None:
    r = keyed.get("/v1/scheduler", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    # past the key check a bad upload is the caller's mistake, not an auth failure
    r = _call(keyed, "POST", "/v1/audio/transcriptions", {"Authorization": f"bearer  {key} "})
    assert assert_openai_error(r, 400)["code"] == "invalid_audio"


def test_speech_with_key(keyed: TestClient) -> None:
    r = _call(keyed, "POST", "/v1/audio/speech", {"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize("path", OPEN)
def test_listing_and_probe_routes_are_open(keyed: TestClient, path: str) -> None:
    r = keyed.get(path)  # no Authorization header at all, as Open WebUI's admin page calls them
    assert r.status_code in (200, 503) if path == "/ready" else r.status_code == 200, r.text
    assert KEY not in r.text and FILE_KEY not in r.text


def test_metrics_and_docs_can_be_opened() -> None:
    """`/metrics` needs a key by default (above); `open_paths` opens it (a Prometheus without a
    token) and the API docs, and can close the HTML pages; the probes and lists stay open."""
    settings = Settings()
    settings.server.api_keys = KEY
    settings.server.open_paths = "/metrics, /docs,/openapi.json"
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/metrics")
        assert r.status_code == 200 and "gateway_" in r.text, r.text[:300]
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").json()["paths"]
        assert_openai_error(client.get("/status"), 401)
        assert_openai_error(client.get("/v1/scheduler"), 401)
        assert client.get("/health").status_code == 200
        assert client.get("/v1/audio/voices").status_code == 200


@pytest.mark.slow
def test_keys_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """In process, every record (message and extras, as the JSON formatter writes them) at DEBUG
    level, through start-up, good and bad keys and errors; then a real server's whole log."""
    secret = tmp_path / "keys"
    secret.write_text(FILE_KEY + "\n")
    settings = Settings()
    settings.server.api_keys = KEY
    settings.server.api_keys_file = secret
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for auth in (f"Bearer {KEY}", f"Bearer {FILE_KEY}", f"Bearer {KEY}-wrong", KEY):
            for method, path in PROTECTED:
                _call(client, method, path, {"Authorization": auth})
        client.get("/ready")
        client.get("/metrics")
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(rec) for rec in caplog.records)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for secret_value in (KEY, FILE_KEY):
        assert secret_value not in text

    env = {"GATEWAY_SERVER__API_KEYS": KEY, "GATEWAY_SERVER__LOG_LEVEL": "DEBUG",
           "GATEWAY_SERVER__LOG_FORMAT": "json"}  # fmt: skip
    import httpx

    with GatewayProcess(env=env) as server:
        for auth in (f"Bearer {KEY}", "Bearer nope", KEY):
            httpx.get(server.url + "/v1/scheduler", headers={"Authorization": auth})
            httpx.post(
                server.url + "/v1/audio/transcriptions",
                headers={"Authorization": auth},
                files={"file": ("a.wav", b"junk")},
                data={"model": "whisper-1"},
            )
        server.stop()
        log = server.log()
    assert '"route": "/v1/scheduler"' in log  # the access log is there...
    assert KEY not in log  # ...and the key is not


# -- path traversal -------------------------------------------------------------------------------

TRAVERSAL = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "kokoro/../../etc",
             "..", ".", "kokoro/", "./kokoro", "~root/.ssh/id_rsa", "whisper-base/../kokoro",
             "C:\\Windows\\win.ini", "kokoro\x00.onnx"]  # fmt: skip


@pytest.mark.parametrize("model", TRAVERSAL)
def test_model_ids_cannot_reach_outside(keyed: TestClient, model: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    r = keyed.post(
        "/v1/audio/speech", headers=auth, json={"model": model, "voice": "alloy", "input": "Hi."}
    )
    assert assert_openai_error(r, 404)["code"] == "model_not_found"
    r = keyed.post("/v1/audio/transcriptions", headers=auth, data={"model": model},
                   files={"file": ("a.wav", b"RIFF")})  # fmt: skip
    assert assert_openai_error(r, 404)["code"] == "model_not_found"
    r = keyed.get("/v1/audio/voices", params={"model": model})
    assert_openai_error(r, 404)
    if not any(seg in (".", "..") for seg in model.split("/")) and "\x00" not in model:
        # (dot segments are resolved by the HTTP client before the server sees the path)
        assert keyed.get(f"/v1/models/{model}").status_code == 404
    store = keyed.app.state.gateway.store  # type: ignore[attr-defined]
    with pytest.raises(ModelError):
        store.folder(model)  # ids are looked up in the manifest, never joined as paths


@pytest.mark.parametrize("voice", ["../x", "../../voices", "/etc/passwd", "..", "jf_alpha/../x",
                                   "..\\..\\x", "voices.npz", "x(1)+../y(1)"])  # fmt: skip
def test_voice_ids_cannot_reach_outside(keyed: TestClient, voice: str) -> None:
    r = keyed.post(
        "/v1/audio/speech",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "tts-1", "voice": voice, "input": "Hi."},
    )
    assert assert_openai_error(r, 400)["code"] == "invalid_voice"


@pytest.mark.parametrize("lang", ["../../../etc/passwd", "/etc/passwd", "en-us/../../x"])
def test_phonemizer_language_cannot_reach_outside(keyed: TestClient, lang: str) -> None:
    r = keyed.post(
        "/v1/audio/speech",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "lang": lang},
    )
    assert_openai_error(r, 400)


def test_uploads_cannot_make_ffmpeg_open_files_or_sockets(keyed: TestClient) -> None:
    """Playlists, concat lists and SDP files name other files and network addresses; the decoder
    only opens the audio containers it allows, so these are refused before anything is opened."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    payloads = [
        f"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:{port}/a.ts\n#EXT-X-ENDLIST\n".encode(),
        b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        f"ffconcat version 1.0\nfile http://127.0.0.1:{port}/a.wav\n".encode(),
        b"ffconcat version 1.0\nfile /etc/passwd\n",
        f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=audio {port} RTP/AVP 0\n".encode(),
    ]
    try:
        for data in payloads:
            r = keyed.post(
                "/v1/audio/transcriptions",
                headers={"Authorization": f"Bearer {KEY}"},
                data={"model": "whisper-1"},
                files={"file": ("a.mp3", data)},
            )
            assert assert_openai_error(r, 400)["code"] == "invalid_audio"
        readable, _, _ = select.select([listener], [], [], 0.1)
        assert not readable, "the decoder connected to an address named in an upload"
    finally:
        listener.close()


def test_validation_errors_do_not_echo_input(keyed: TestClient) -> None:
    """(An engine crash's 500 hides its details too: see test_faults.py.)"""
    r = keyed.post(
        "/v1/audio/speech",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "speed": "s3cr3t"},
    )
    err = assert_openai_error(r, 400)
    assert "s3cr3t" not in err["message"]


# -- CORS -----------------------------------------------------------------------------------------


def test_cors_off_by_default(keyed: TestClient) -> None:
    origin = {"Origin": "http://evil.example"}
    assert (
        "access-control-allow-origin" not in keyed.get("/v1/audio/models", headers=origin).headers
    )
    pre = keyed.options(
        "/v1/audio/speech",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert "access-control-allow-origin" not in pre.headers
    assert pre.status_code in (400, 405)


def test_cors_on_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__CORS_ORIGINS", "http://webui.example, http://other.example")
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        good = {"Origin": "http://webui.example"}
        r = client.get("/v1/audio/models", headers=good)
        assert r.headers["access-control-allow-origin"] == "http://webui.example"
        pre = client.options(
            "/v1/audio/speech",
            headers={
                **good,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "http://webui.example"
        assert "POST" in pre.headers["access-control-allow-methods"]
        bad = client.get("/v1/audio/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in bad.headers


# -- body size limits, over a real socket ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_server():  # type: ignore[no-untyped-def]
    with GatewayProcess(env={"GATEWAY_SERVER__MAX_UPLOAD_MB": "1"}) as server:
        yield server


def _read_response(sock: socket.socket, timeout: float = 60.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("path,ctype", [
    ("/v1/audio/transcriptions", "multipart/form-data; boundary=xyz"),
    ("/v1/audio/speech", "application/json"),
])  # fmt: skip
def test_content_length_over_limit_is_413_before_the_body(small_server: GatewayProcess, path: str,
                                                          ctype: str) -> None:  # fmt: skip
    """Headers announce 100 MB and no body byte is sent: the 413 comes back anyway."""
    with socket.create_connection(("127.0.0.1", small_server.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {100 << 20}\r\n\r\n".encode())  # fmt: skip
        response = _read_response(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), response[:300]
    err = json.loads(body)["error"]
    assert err["code"] == "request_too_large" and err["message"]


@pytest.mark.parametrize("path,ctype,prefix", [
    ("/v1/audio/transcriptions", "multipart/form-data; boundary=xyz",
     b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'),
    ("/v1/audio/speech", "application/json", b'{"model": "tts-1", "voice": "alloy", "input": "'),
])  # fmt: skip
def test_chunked_body_over_limit_is_413(small_server: GatewayProcess, path: str, ctype: str,
                                        prefix: bytes) -> None:  # fmt: skip
    """No Content-Length: the limit is counted as chunks arrive; the 413 comes once it is
    crossed, and the client never has to send the rest (here up to 64 MiB)."""
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", small_server.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())  # fmt: skip
        sock.sendall(b"%x\r\n%s\r\n" % (len(prefix), prefix))
        try:
            while sent < 64 << 20:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server answered before the body ended
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    assert json.loads(response.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_too_large"
    assert sent < 64 << 20, "the whole body was read"
    # the server is fine afterwards
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            health = httpx.get(small_server.url + "/health")
            break
        except httpx.HTTPError as exc:  # the listener may take a moment to accept again
            assert time.monotonic() < deadline, f"/health refused for 60 s: {exc!r}"
            time.sleep(0.2)
    assert health.status_code == 200, health.text


def test_a_missing_key_is_refused_before_the_body_is_read() -> None:
    """The head of an upload (under the size limits) with no key, and not one body byte: the 401
    comes at once. Eight 25 MiB uploads without a key were each read in full before theirs."""
    with LiveServer(Settings(server=ServerSettings(api_keys=KEY))) as live:
        for path, ctype, length in [
            ("/v1/audio/transcriptions", "multipart/form-data; boundary=xyz", 20 << 20),
            ("/v1/audio/speech", "application/json", 1000),
        ]:
            with socket.create_connection(("127.0.0.1", live.port)) as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                             f"Content-Length: {length}\r\n\r\n".encode())  # fmt: skip
                response = _read_response(sock, timeout=30)
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401"), response[:300]
            assert json.loads(body)["error"]["code"] == "invalid_api_key"
