"""Overload: beyond the queue bounds the gateway answers 429 with Retry-After (or 503 when a
queue wait expires) in the OpenAI shape, loses and hangs nothing, and its memory stays bounded.

The first tests block the engine on an event, so the queue states are exact (no timing); the
flood runs against a real uvicorn process with tiny queues.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Settings

from ..conftest import tone_wav
from ..support.errors import assert_openai_error
from ..support.faults import blocked
from ..support.process import GatewayProcess
from ..support.wait import until as _until

# floods of real requests against a gateway process
pytestmark = pytest.mark.slow

SPEECH = "/v1/audio/speech"
STT = "/v1/audio/transcriptions"


wav = tone_wav


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )  # fmt: skip


# -- exact queue states, in process ---------------------------------------------------------------


def test_queue_bounds_429_retry_after_and_queue_timeout_503() -> None:
    settings = Settings()
    settings.scheduler.interactive.max_queue_size = 2
    settings.scheduler.batch.max_queue_size = 1
    app = create_app(settings)
    gw = app.state.gateway
    gate, started = blocked(gw.models["kokoro"].engine)  # released by the test
    sched = gw.scheduler
    body = {"model": "tts-1", "voice": "alloy", "input": "Queued.", "response_format": "wav"}

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                         timeout=300) as c:  # fmt: skip
                post = lambda **kw: asyncio.ensure_future(c.post(SPEECH, json=body, **kw))  # noqa: E731
                running = post()
                await _until(started.is_set, "first unit running")
                queued = post()
                await _until(lambda: sched.queued() == 1, "one unit queued")
                expiring = post(headers={"X-Queue-Timeout": "0.3"})
                await _until(lambda: sched.queued() == 2, "two units queued")
                out["full"] = await post()  # interactive queue: 2 waiting = full
                out["expired"] = await expiring  # its 0.3 s queue wait ran out
                batch_queued = post(headers={"X-Priority": "batch"})
                await _until(lambda: sched.queued() == 2, "batch unit queued")
                out["batch_full"] = await post(headers={"X-Priority": "batch"})
                out["depth_while_blocked"] = sched.queued()
                gate.set()
                out["running"], out["queued"], out["batch_queued"] = await asyncio.gather(
                    running, queued, batch_queued
                )
                out["metrics"] = (await c.get("/metrics")).text
                out["depth_after"] = sched.queued()
        return out

    try:
        out = asyncio.run(main())
    finally:
        gate.set()
    for key in ("full", "batch_full"):
        err = assert_openai_error(out[key], 429)
        assert err["type"] == "rate_limit_error" and err["code"] == "queue_full"
        assert int(out[key].headers["Retry-After"]) >= 1
    assert "batch queue is full" in out["batch_full"].json()["error"]["message"]
    err = assert_openai_error(out["expired"], 503)
    assert err["code"] == "queue_timeout"
    assert int(out["expired"].headers["Retry-After"]) >= 1
    for key in ("running", "queued", "batch_queued"):
        assert out[key].status_code == 200 and out[key].content.startswith(b"RIFF"), key
    m = out["metrics"]
    assert metric(m, "gateway_rejections_total", level="interactive", reason="queue_full") == 1
    assert metric(m, "gateway_rejections_total", level="batch", reason="queue_full") == 1
    assert metric(m, "gateway_rejections_total", level="interactive", reason="queue_timeout") == 1
    assert out["depth_while_blocked"] == 2 and out["depth_after"] == 0
    assert metric(m, "gateway_queue_depth") == 0


def test_client_gone_frees_its_queue_slot() -> None:
    """A caller that gives up (disconnects) while queued does not keep holding a slot."""
    settings = Settings()
    settings.scheduler.interactive.max_queue_size = 1
    app = create_app(settings)
    gw = app.state.gateway
    gate, started = blocked(gw.models["kokoro"].engine)
    sched = gw.scheduler
    body = {"model": "tts-1", "voice": "alloy", "input": "Bye.", "response_format": "pcm"}

    async def main() -> tuple[int, int, int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                         timeout=300) as c:  # fmt: skip
                running = asyncio.ensure_future(c.post(SPEECH, json=body))
                await _until(started.is_set, "first unit running")
                impatient = asyncio.ensure_future(c.post(SPEECH, json=body))
                await _until(lambda: sched.queued() == 1, "one unit queued")
                impatient.cancel()  # the client goes away
                await _until(lambda: sched.queued() == 0, "the abandoned unit left the queue")
                late = asyncio.ensure_future(c.post(SPEECH, json=body))
                await _until(lambda: sched.queued() == 1, "the next caller got the slot")
                gate.set()
                r1, r2 = await asyncio.gather(running, late)
                return r1.status_code, r2.status_code, sched.queued()

    try:
        assert asyncio.run(main()) == (200, 200, 0)
    finally:
        gate.set()


# -- flood a real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flood_server():  # type: ignore[no-untyped-def]
    env = {
        "GATEWAY_SCHEDULER__INTERACTIVE__MAX_QUEUE_SIZE": "2",
        "GATEWAY_SCHEDULER__BATCH__MAX_QUEUE_SIZE": "1",
        "GATEWAY_SCHEDULER__INTERACTIVE__DEFAULT_TIMEOUT_S": "120",
    }
    with GatewayProcess(env=env) as proc:
        yield proc


async def _flood(url: str, n: int, clip: bytes) -> list[Any]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as c:

        async def one(i: int) -> Any:
            try:
                if i % 5 in (1, 3):
                    headers = {"X-Priority": "batch"} if i % 10 == 3 else {}
                    return await c.post(STT, files={"file": (f"{i}.wav", clip)},
                                        data={"model": "whisper-1"}, headers=headers)  # fmt: skip
                return await c.post(SPEECH, json={"model": "tts-1", "voice": "alloy",
                                                  "input": f"Request number {i}."})  # fmt: skip
            except httpx.HTTPError as exc:  # a lost or broken request
                return exc

        # all complete within a generous bound: nothing hangs
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=900)


# What a flood may add to the memory of the same requests a few at a time: its 80 clients' bodies
# and decoded clips (80 x (64 KiB WAV + 128 KiB float32) = 15 MiB) and the allocator's arenas of
# busier threads (measured: a flood peaked 42 MiB over the warm round). A model loaded twice or
# work piling up past the queues adds hundreds (Whisper base alone is about 150 MiB).
FLOOD_OVER_WARM_MIB = 128
# Two floods that kept each request's data (80 x (192 KiB + the speech) = 23 MiB a flood) pass
# this; measured growth once warm: at most 5 MiB.
FLOODS_GROWTH_MIB = 32


def _peak_rss_kib(server: GatewayProcess, work: Any) -> tuple[int, Any]:
    """The highest RSS (KiB) sampled every 0.2 s while `work()` runs, and what it returned."""
    peak = [server.status()["VmRSS"]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(server.status()["VmRSS"])
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = work()
    finally:
        stop.set()
        sampler.join()
    return max(peak), out


def test_flood_every_request_answered(flood_server: GatewayProcess) -> None:
    clip = wav(2.0)
    # the baseline: the same mix of requests, five at once (the queues hold them), measured the
    # same way, once both models are loaded
    asyncio.run(_flood(flood_server.url, 5, clip))
    warm, _ = _peak_rss_kib(flood_server, lambda: asyncio.run(_flood(flood_server.url, 5, clip)))
    peak, waves = _peak_rss_kib(
        flood_server, lambda: [asyncio.run(_flood(flood_server.url, 40, clip)) for _ in range(2)]
    )
    statuses: list[int] = []
    for wave in waves:
        for r in wave:
            assert isinstance(r, httpx.Response), f"request lost: {r!r}"
            statuses.append(r.status_code)
            assert r.status_code in (200, 429, 503), (r.status_code, r.text[:300])
            if r.status_code == 200:
                continue
            assert_openai_error(r, r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
    assert len(statuses) == 80
    assert statuses.count(200) >= 2 * 3  # at least what the running slots and queues hold
    assert statuses.count(429) >= 1  # 40 at once against queues of 2 and 1
    # the server saw every request (none lost on the way), and nothing is left queued
    metrics = httpx.get(flood_server.url + "/metrics").text
    seen = metric(metrics, "gateway_http_requests_total", route=SPEECH) + metric(
        metrics, "gateway_http_requests_total", route=STT
    )
    assert seen >= 80
    status = httpx.get(flood_server.url + "/v1/scheduler").json()
    assert all(q["depth"] == 0 for q in status["queues"].values()), status["queues"]
    assert not any(i["busy"] for i in status["instances"])
    # memory stays bounded: what the same requests a few at a time take, plus request buffers
    over_mib = (peak - warm) / 1024
    assert over_mib < FLOOD_OVER_WARM_MIB, f"flood peak {over_mib:.0f} MiB over the warm round"
    assert (
        flood_server.status()["Threads"] < 100
    )  # worker threads are per instance, not per request
    # and the server still serves a normal request
    r = httpx.post(flood_server.url + SPEECH, json={"model": "tts-1", "voice": "alloy",
                                              "input": "Still standing."}, timeout=300)  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"


def test_repeated_floods_do_not_grow_memory(flood_server: GatewayProcess) -> None:
    """Once warm (the flood above loaded both models), more floods leave RSS where it was."""
    clip = wav(2.0)
    asyncio.run(_flood(flood_server.url, 40, clip))
    base = flood_server.status()
    for _ in range(2):
        for r in asyncio.run(_flood(flood_server.url, 40, clip)):
            assert isinstance(r, httpx.Response) and r.status_code in (200, 429, 503)
    after = flood_server.status()
    grown_mib = (after["VmRSS"] - base["VmRSS"]) / 1024
    assert grown_mib < FLOODS_GROWTH_MIB, f"RSS grew {grown_mib:.0f} MiB over two more floods"
    assert after["Threads"] <= base["Threads"] + 4, (base, after)
