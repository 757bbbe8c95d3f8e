"""The "try it" page (/realtime) in a real headless Chromium against a real `gateway serve`.

A WAV of two sentences spoken by our TTS with a 1.5 s pause between them (16 kHz, so the page
has to convert it to the 24 kHz PCM16 that /v1/realtime takes) is picked in the page's file input
(DevTools' DOM.setFileInputFiles: the page gets a real File, as from the file dialog). The page
connects to /v1/realtime?intent=transcription with the subprotocols `realtime` and
`openai-insecure-api-key.<key>` (keys are configured on the gateway, and a browser can send no
header), sends session.update (session.type "transcription", server_vad), streams the audio in
100 ms appends at the pace it is spoken, and shows each turn's transcript: two turns whose words
are those of the sentences. Without a key the page says the gateway refused it.

Waits are for states the page shows (tests/support/browser.py); no Chromium: a skip, under CI a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import encode
from ..support.browser import ARTIFACTS, Browser, browser_fixture  # noqa: F401  (the `browser` fixture)
from ..support.process import GatewayProcess
from ..support.realtime_util import SENTENCES, clip

# a headless Chromium streaming speech to a gateway process
pytestmark = pytest.mark.slow

KEY = "sk-realtime-page-test"
DEADLINE_S = 180.0
# content words Whisper base gets from this voice (it has heard "red cup" as "wet cup")
WORDS = ({"little", "robot", "walked", "kitchen", "floor"}, {"picked", "cup", "wooden", "table"})

# What the page shows, read from its DOM.
PAGE_STATE = """(() => {
  if (!document.getElementById("turns")) return null;  // still loading (or about:blank)
  return {
    state: document.body.dataset.state,
    conn: document.getElementById("conn").textContent,
    banner: document.getElementById("banner").textContent,
    turns: [...document.querySelectorAll("#turns li")].map((li) => ({
      item: li.dataset.item, state: li.dataset.state,
      text: li.querySelector(".text").textContent})),
    events: [...document.querySelectorAll("#events li")].map((li) => li.textContent).reverse(),
  };
})()"""


def wait_page(browser: Browser, what: str, predicate: Callable[[dict], bool]) -> dict:
    return browser.wait(PAGE_STATE, what, predicate, DEADLINE_S)


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    server = GatewayProcess(env={"GATEWAY_SERVER__API_KEYS": KEY})
    try:
        yield server.start()
    finally:
        server.stop()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_page_streams_a_wav_and_shows_each_turn(gateway: GatewayProcess, browser: Browser,
                                                tmp_path: Path) -> None:  # fmt: skip
    assert httpx.get(gateway.url + "/realtime").status_code == 200  # the HTML needs no key
    wav = tmp_path / "two-sentences.wav"  # realtime_util's clip: our TTS, 1.5 s pause, 16 kHz
    wav.write_bytes(encode(clip(pause_s=1.5), 16000, "wav", "pcm_s16le", "s16"))

    # 1. no key: the gateway refuses the upgrade, and the page says so
    browser.goto(gateway.url + "/realtime")
    wait_page(browser, "the form", lambda s: s["state"] == "idle")
    browser.set_files("file", wav)
    browser.eval('document.getElementById("send").click()')
    refused = wait_page(browser, "the refusal", lambda s: s["state"] == "error")
    assert "closed the connection" in refused["banner"] and not refused["turns"], refused

    # 2. with the key, typed into the page: it goes as the subprotocol
    browser.eval(f'document.getElementById("key").value = {KEY!r}')
    browser.eval('document.getElementById("send").click()')
    done = wait_page(browser, "two completed turns",
                     lambda s: s["state"] in ("done", "error", "closed"))  # fmt: skip
    browser.screenshot(ARTIFACTS / "realtime.png")
    assert done["state"] == "done" and not done["banner"], done
    assert [t["state"] for t in done["turns"]] == ["completed", "completed"], done
    for turn, words, sentence in zip(done["turns"], WORDS, SENTENCES, strict=True):
        assert words <= _words(turn["text"]), (sentence, turn)
    events = " ".join(done["events"])
    for kind in ("session.updated", "input_audio_buffer.speech_started",
                 "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                 "conversation.item.input_audio_transcription.completed"):  # fmt: skip
        assert kind in events, (kind, done["events"])
    assert KEY not in browser.eval("location.href")


def test_page_is_self_contained() -> None:
    """No external assets: the page talks to its own origin only, so it works offline."""
    from gateway.api.status_page import CSP, REALTIME_PAGE, _html

    html = _html(REALTIME_PAGE)  # as served: with the key handling it shares with /status
    assert "function readKey()" in html and "/* key.js */" not in html
    for needle in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert needle not in html, needle
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP
