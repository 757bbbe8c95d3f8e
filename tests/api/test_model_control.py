"""Model control (`/api/ps`, Ollama's shape) on the real models, on the CPU: load, list, unload
(the process's memory measured), keep_alive 0 and -1, keys, unknown models, and an unload while
a request runs."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.cli import main as cli
from gateway.config import Settings
from gateway.engines.memory import release_free_memory

from ..conftest import PASSAGE, LiveServer, decode, run_asgi
from ..support.wait import wait_until

KEY = "sk-control-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings() -> Settings:
    settings = Settings()
    settings.server.api_keys = KEY
    settings.models.preload = ""
    return settings


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(_settings()), raise_server_exceptions=False) as c:
        yield c


def _rss_mib(trim: bool = False) -> float:
    if trim:  # freed heap of earlier tests in this process, which a load's own trim would drop
        gc.collect()
        release_free_memory()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _loaded(client: TestClient) -> dict[str, dict[str, Any]]:
    r = client.get("/api/ps", headers=AUTH)
    assert r.status_code == 200, r.text
    return {m["model"]: m for m in r.json()["models"]}


@pytest.mark.slow
def test_load_list_unload_gives_the_memory_back(client: TestClient) -> None:
    """Load and unload whisper-base three times, reading the process's RSS. What an unload gives
    back depends on the process's history: alone this test sees 94 % of the load come back, after
    the rest of the suite 75 % (pages of the heap that other live allocations still pin). A leak
    is told apart by repeating: the memory of a model that is not freed adds up, cycle by cycle."""
    client.delete("/api/ps/whisper-base", headers=AUTH)
    before = _rss_mib(trim=True)  # the unload's own trim is what `after` measures
    cycles: list[tuple[float, float]] = []
    for _ in range(3):
        r = client.post("/api/ps/whisper-base", headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["loaded"] and body["lane"] == "cpu" and body["units_run"] == 0
        assert body["reason"] == "no_gpu"  # no GPU on this machine: the answer says why
        loaded = _rss_mib()
        entry = _loaded(client)["whisper-base"]
        assert entry["lane"] == "cpu" and entry["pinned"] is False and entry["idle_since"]
        assert entry["keep_alive_s"] == -1 and entry["expires_at"] is None  # cpu_idle_ttl_s 0

        r = client.delete("/api/ps/whisper-1", headers=AUTH)  # an alias names the same model
        assert r.status_code == 200 and r.json() == {"model": "whisper-base", "unloaded": ["cpu"]}
        assert "whisper-base" not in _loaded(client)
        cycles.append((loaded, _rss_mib()))
    print(f"RSS MiB: before load {before:.0f}, (loaded, after unload) x3 {cycles}")
    grew = cycles[0][0] - before
    assert grew > 50, grew  # whisper-base's weights and runtime
    assert cycles[0][0] - cycles[0][1] > 0.5 * grew, "less than half the load's memory came back"
    # nothing adds up: two more loads and unloads end where the first unload did
    assert cycles[-1][1] - cycles[0][1] < 0.25 * grew, cycles


@pytest.mark.slow
def test_keep_alive_zero_unloads_after_use_and_minus_one_keeps(client: TestClient) -> None:
    r = client.post("/api/ps/kokoro", headers=AUTH, json={"keep_alive": -1})
    assert r.status_code == 200 and r.json()["keep_alive_s"] == -1
    r = client.post("/api/ps/whisper-base", headers=AUTH, json={"keep_alive": 0})
    assert r.status_code == 200 and r.json()["keep_alive_s"] == 0
    assert set(_loaded(client)) >= {"kokoro", "whisper-base"}  # 0 waits for its first use

    speech = client.post(
        "/v1/audio/speech",
        headers=AUTH,
        json={
            "model": "tts-1",
            "voice": "alloy",
            "input": "Keep me warm.",
            "response_format": "wav",
        },
    )
    assert speech.status_code == 200
    r = client.post(
        "/v1/audio/transcriptions",
        headers=AUTH,
        data={"model": "whisper-1"},
        files={"file": ("a.wav", speech.content, "audio/wav")},
    )
    assert r.status_code == 200, r.text
    loaded = _loaded(client)
    assert "whisper-base" not in loaded  # unloaded once its job was over
    assert loaded["kokoro"]["units_run"] >= 1 and loaded["kokoro"]["expires_at"] is None

    r = client.post("/api/ps/kokoro", headers=AUTH, json={"keep_alive": "50ms"})
    assert r.status_code == 200 and r.json()["keep_alive_s"] == 0.05 and r.json()["expires_at"]
    wait_until(lambda: "kokoro" not in _loaded(client), "kokoro expired by its keep_alive")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_control_needs_a_key(client: TestClient, method: str) -> None:
    path = "/api/ps" if method == "GET" else "/api/ps/kokoro"
    for headers in (None, {"Authorization": "Bearer wrong"}):
        r = client.request(method, path, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_unknown_model_is_404(client: TestClient, method: str) -> None:
    r = client.request(method, "/api/ps/llama3", headers=AUTH)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"keep_alive": "soon"}, "keep_alive"),
        ({"lane": "tpu"}, "lane"),
        ({"keep_alive": True}, None),
    ],
)
def test_bad_load_request_is_400(client: TestClient, body: dict, param: str | None) -> None:
    r = client.post("/api/ps/kokoro", headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    if param:
        assert r.json()["error"]["param"] == param


@pytest.mark.slow
def test_unload_while_a_request_runs_lets_the_request_finish() -> None:
    app = create_app(_settings())

    async def work(client: httpx.AsyncClient) -> tuple[httpx.Response, dict, list[int]]:
        speech = asyncio.ensure_future(
            client.post(
                "/v1/audio/speech",
                headers=AUTH,
                json={
                    "model": "kokoro",
                    "voice": "alloy",
                    "input": PASSAGE,
                    "response_format": "wav",
                },
            )
        )
        busy: list[int] = []
        deadline = time.monotonic() + 120
        while not busy:  # until a unit of the request runs on a loaded instance
            assert not speech.done(), "the request ended before a unit was seen running"
            assert time.monotonic() < deadline, "no unit ever ran"
            ps = (await client.get("/api/ps", headers=AUTH)).json()["models"]
            busy = [m["units_run"] for m in ps if m["model"] == "kokoro" and m["busy"]]
            await asyncio.sleep(0.01)
        gone = (await client.delete("/api/ps/kokoro", headers=AUTH)).json()
        return await speech, gone, busy

    r, gone, _ = run_asgi(app, work)
    assert gone == {"model": "kokoro", "unloaded": ["cpu"]}
    assert r.status_code == 200, r.text
    audio, rate = decode(r.content)
    assert len(audio) / rate > 5  # the whole passage, some of it after a reload


@pytest.mark.slow
def test_cli_ps_load_unload_drive_a_running_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    with LiveServer(_settings()) as live:
        common = ["--url", live.url, "--key", KEY]
        assert cli(["models", "load", "kokoro", "--keep-alive", "-1", *common]) == 0
        assert capsys.readouterr().out == "kokoro loaded on the CPU (no_gpu)\n"
        assert cli(["models", "ps", *common]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:2] == ["MODEL", "LANE"]
        assert [line.split()[:2] for line in table[1:]] == [["kokoro", "cpu"]]
        assert table[1].endswith("forever")
        assert cli(["models", "unload", "tts-1", *common]) == 0
        assert capsys.readouterr().out == "kokoro unloaded: cpu\n"
        assert cli(["models", "ps", "--json", *common]) == 0
        assert '"models": []' in capsys.readouterr().out
        assert cli(["models", "unload", "llama3", *common]) == 1  # unknown: one clear line
        assert capsys.readouterr().err.startswith("error: 404: model 'llama3' does not exist")
        assert cli(["models", "ps", "--url", live.url]) == 1  # no key
        assert "401" in capsys.readouterr().err
