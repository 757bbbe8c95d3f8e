"""The live status page (/status) in a real headless Chromium against a real `gateway serve`.

The browser is Debian's `chromium`, driven over the Chrome DevTools Protocol (tests/support/browser.py).
The gateway runs with one CPU slot and no background slot, so work units queue behind each other.
The test:

- opens /status without a key (keys are configured): the page says /v1/scheduler answered 401;
- opens /status?key=...: the page goes live, shows an empty queue and no Whisper instance;
- sends work (a transcription at batch priority, speech requests at interactive, in threads,
  kept flowing until the page has shown a queue) and waits for the page to show a non-zero
  queue depth, then the Whisper instance on the `cpu` lane, then the queue empty again, and
  requests per minute and the no_gpu fallback with its reason;
- writes a screenshot taken while work was queued to test-artifacts/status.png.

Every wait is for a state the page shows, with a generous deadline only so a broken build fails
instead of hanging. Chromium missing: a skip locally, a failure under CI=true.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from ..conftest import encode
from ..support.browser import ARTIFACTS, Browser, browser_fixture  # noqa: F401  (the `browser` fixture)
from ..support.process import GatewayProcess

# a headless Chromium against a gateway process under real load
pytestmark = pytest.mark.slow

KEY = "sk-status-page-test"
STT = "whisper-tiny.en"
DEADLINE_S = 120.0
SENTENCE = "The little robot walked slowly across the kitchen floor and picked up a red cup."


# What the page shows, read from its DOM (not from /v1/scheduler).
PAGE_STATE = """(() => {
  const text = (id) => (document.getElementById(id) || {}).textContent || "";
  if (!document.getElementById("q-total")) return null;  // still loading (or about:blank)
  return {
    polls: Number(document.body.dataset.polls || 0),
    conn: text("conn"),
    banner: text("banner"),
    queue: Number(document.getElementById("q-total").dataset.depth),
    queueText: text("q-total"),
    instances: [...document.querySelectorAll("#instances tr[data-model]")].map((r) => ({
      model: r.dataset.model, lane: r.dataset.lane, state: r.dataset.state,
      laneText: r.querySelector(".lane-cell").textContent.trim()})),
    rates: Object.fromEntries([...document.querySelectorAll("#rates tr[data-model]")].map(
      (r) => [r.dataset.model, Number(r.children[1].textContent)])),
    fallbacks: text("fallback-totals") + " | " + text("fallbacks"),
  };
})()"""


def wait_page(browser: Browser, what: str, predicate: Callable[[dict], bool],
              seen: list[dict] | None = None) -> dict:  # fmt: skip
    return browser.wait(PAGE_STATE, what, predicate, DEADLINE_S, seen)


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    server = GatewayProcess(env={
        "GATEWAY_SERVER__API_KEYS": KEY,
        "GATEWAY_SCHEDULER__CPU_SLOTS": "1",
        "GATEWAY_SCHEDULER__CPU_BACKGROUND_SLOTS": "0",
        "GATEWAY_SCHEDULER__CPU_IDLE_TTL_S": "0",
    })  # fmt: skip
    try:
        yield server.start()
    finally:
        server.stop()


def _clip(url: str, auth: dict[str, str]) -> bytes:
    """~20 s of speech (one Whisper unit), spoken by the server's own TTS."""
    from gateway.audio.decode import decode_audio

    r = httpx.post(url + "/v1/audio/speech", headers=auth, timeout=300,
                   json={"model": "tts-1", "voice": "alloy", "input": SENTENCE,
                         "response_format": "wav"})  # fmt: skip
    r.raise_for_status()
    speech = decode_audio(r.content)
    reps = int(20 * 16000 // len(speech)) + 1
    return encode(np.tile(speech, reps)[: 20 * 16000], 16000, "wav", "pcm_s16le", "s16")


def test_status_page_shows_queue_and_lane_live(gateway: GatewayProcess, browser: Browser) -> None:
    t0 = time.monotonic()
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(gateway.url + "/status").status_code == 200  # the HTML needs no key

    # 1. no key: the page says why it shows nothing
    browser.goto(gateway.url + "/status")
    refused = wait_page(browser, "the 401 message", lambda s: "401" in s["banner"])
    assert "API key" in refused["conn"] and refused["polls"] == 0, refused

    # 2. with the key (taken from ?key= into localStorage, removed from the address bar)
    browser.goto(gateway.url + f"/status?key={KEY}")
    idle = wait_page(browser, "live data", lambda s: s["polls"] >= 1 and s["conn"] == "live")
    assert idle["queue"] == 0 and not any(i["model"] == STT for i in idle["instances"]), idle
    assert KEY not in browser.eval("location.href")

    # 3. work: speech at interactive and a transcription at batch share one CPU slot
    clip = _clip(gateway.url, auth)  # loads Kokoro (first speech)
    shown_queue = threading.Event()
    errors: list[str] = []

    def transcribe() -> None:
        r = httpx.post(gateway.url + "/v1/audio/transcriptions", timeout=600,
                       headers={**auth, "X-Priority": "batch"},
                       files={"file": ("long.wav", clip)}, data={"model": STT})  # fmt: skip
        if r.status_code != 200:
            errors.append(f"transcription: {r.status_code} {r.text[:300]}")

    def speak() -> None:
        while not shown_queue.is_set():  # keep work flowing until the page has shown a queue
            r = httpx.post(gateway.url + "/v1/audio/speech", headers=auth, timeout=600,
                           json={"model": "tts-1", "voice": "alloy", "input": SENTENCE})  # fmt: skip
            if r.status_code != 200:
                errors.append(f"speech: {r.status_code} {r.text[:300]}")
                return

    workers = [threading.Thread(target=transcribe, daemon=True)]
    workers += [threading.Thread(target=speak, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    history: list[dict] = []
    try:
        queued = wait_page(browser, "a non-zero queue", lambda s: s["queue"] > 0, history)
        assert queued["queueText"] == str(queued["queue"]), queued
        shot = browser.screenshot(ARTIFACTS / "status.png")
        wait_page(browser, f"{STT} on the cpu lane",
                  lambda s: any(i["model"] == STT and i["lane"] == "cpu" and i["laneText"] == "cpu"
                                for i in s["instances"]), history)  # fmt: skip
        browser.screenshot(ARTIFACTS / "status-lane.png")
    finally:
        shown_queue.set()
        for w in workers:
            w.join(timeout=600)
    assert not errors, errors

    # 4. the queue drains and the page says so; the minute's work and the fallbacks are shown
    done = wait_page(browser, "the queue empty and the work counted",
                     lambda s: s["queue"] == 0 and s["rates"].get(STT, 0) >= 1
                     and s["rates"].get("kokoro", 0) >= 1, history)  # fmt: skip
    status = httpx.get(gateway.url + "/v1/scheduler", headers=auth).json()
    stt_rows = [i for i in done["instances"] if i["model"] == STT]
    assert stt_rows and all(i["lane"] == "cpu" for i in stt_rows), done
    # STT ran on the cpu lane under placement auto, so the scheduler recorded why (on a CPU-only
    # machine: no_gpu), and the page shows each reason
    reasons = {f["reason"] for f in status["fallbacks"] if f["model"] == STT}
    assert reasons, status["fallbacks"]
    assert all(r in done["fallbacks"] for r in reasons), (reasons, done["fallbacks"])
    # the page changed under our eyes: empty queue, then a queue, then empty again
    depths = [s["queue"] for s in history]
    assert max(depths) > 0 and depths[-1] == 0, depths
    # 5. the GPU card and a GPU instance (this machine may have no GPU): render a sample reply
    sample = {"gpu": {"name": "Sample GPU", "index": 0, "mig": False, "used_mib": 2048,
                      "total_mib": 8192, "free_mib": 6144, "utilization_pct": 37,
                      "process_used_mib": 1900, "committed_budget_mib": 2560, "reserve_mib": 512},
              "lanes": {"gpu": {"reason": ""}},
              "instances": [{"model": "kokoro", "lane": "gpu", "loaded": True, "busy": False,
                             "threads": None, "nice": 0, "background": False, "pinned": False,
                             "gpu_budget_mib": 1024, "idle_s": 3.0, "load_s": 1.2}]}  # fmt: skip
    shown = _rendered(browser, sample, {"renderGpu": "gpu", "renderInstances": "instances"})
    assert "utilization 37 %" in shown[0] and "2.0 GiB / 8.0 GiB" in shown[0], shown
    assert "budget 1.0 GiB" in shown[1] and "gpu" in shown[1], shown
    print(f"\nstatus page screenshot: {shot} ({time.monotonic() - t0:.0f} s)")


def _rendered(browser: Browser, sample: dict, cards: dict[str, str]) -> list[str]:
    """The page's own render functions run on a sample `/v1/scheduler` reply: the text of each
    card, in the order of `cards` ({render function: element id})."""
    calls = "".join(f"{fn}(s);" for fn in cards)
    texts = ", ".join(f'document.getElementById("{el}").textContent' for el in cards.values())
    return browser.eval(f"(() => {{ const s = {json.dumps(sample)}; {calls} return [{texts}]; }})()")


def test_page_is_self_contained() -> None:
    """No external assets: nothing to fetch but /v1/scheduler, so it works offline."""
    from gateway.api.status_page import CSP, PAGE

    html = PAGE.read_text("utf-8")
    for needle in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert needle not in html, needle
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP


def test_activity_rates_and_recent_fallbacks() -> None:
    from gateway.scheduler import activity

    now = [1000.0]
    a = activity.Activity(max_fallbacks=3, window_s=30, clock=lambda: now[0])
    a.finished("kokoro", "cpu", 2.5, first=True)
    a.finished("kokoro", "cpu", 1.5, first=False)  # a second unit of the same request
    now[0] += 31
    a.finished("whisper", "gpu", 20.0, first=True)
    for i in range(5):
        a.fallback("whisper", f"reason{i}", "batch")
    s = a.summary(["kokoro", "whisper"], recent=2)
    assert s["per_minute"]["kokoro"] == {"requests": 0, "units": 0, "audio_s": 0}  # aged out
    assert s["per_minute"]["whisper"] == {"requests": 2, "units": 2, "audio_s": 40.0}  # x 60/30
    assert [f["reason"] for f in s["recent_fallbacks"]] == ["reason4", "reason3"]


def test_status_page_shows_simulated_gpu_neighbour(gateway: GatewayProcess,
                                                  browser: Browser) -> None:  # fmt: skip
    """A simulated pressure event (no GPU here): the page shows the neighbour's memory, the
    event with what it unloaded, and when each model will be unloaded."""
    browser.goto(gateway.url + f"/status?key={KEY}")
    wait_page(browser, "live data", lambda s: s["polls"] >= 1 and s["conn"] == "live")
    inst = {"model": "kokoro", "lane": "cpu", "loaded": True, "busy": False, "threads": 2,
            "nice": 0, "background": False, "pinned": False, "idle_s": 1.0, "load_s": 1.0,
            "units_run": 7}  # fmt: skip
    sample = {"gpu_pressure": {"enabled": True, "active": True, "free_mib": 300,
                               "other_processes_mib": 14000, "clear_line_mib": 2048,
                               "hold_s": 30, "events": [{"started": 1.7e9, "ended": None,
                               "free_mib": 300, "others_mib": 14000,
                               "unloaded": ["whisper-base"]}]},
              "instances": [inst],
              "loaded": [{"model": "kokoro", "lane": "cpu", "background": False, "busy": False,
                          "pinned": False, "expires_at": None, "keep_alive_s": -1}]}  # fmt: skip
    shown = _rendered(browser, sample, {"renderPressure": "pressure", "renderInstances": "instances"})
    assert "13.7 GiB" in shown[0] and "new loads go to the CPU" in shown[0], shown
    assert "unloaded: whisper-base" in shown[0] and "(now)" in shown[0], shown
    assert "7" in shown[1] and shown[1].endswith("forever"), shown
