"""Text with no letters (digits, prices, symbols alone) has no script to say its language: it
is read in the request's `lang`, else in the deployment's default (English as shipped), not in
the voice's own language (the embedded voices are Japanese, and `$1,234.56` was read as
Japanese). So the spoken-length cap that English reading applies holds for it too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from wyoming.tts import Synthesize

from gateway.text.text import detect_lang

from ..conftest import LiveServer
from ..support.wyoming_util import client, read_until

DIGITS = "9" * 4096  # at the input limit; read one by one, 20,475 characters


def _speech(server: LiveServer, text: str, **over: Any) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "input": text, **over}
    return httpx.post(server.url + "/v1/audio/speech", json=body, timeout=120)


def test_a_price_alone_is_read_in_english(server: LiveServer) -> None:
    """A chat client's piece `$1,234.56`, by a Japanese voice, heard back by Whisper in English."""
    spoken = _speech(server, "$1,234.56", response_format="wav")
    assert spoken.status_code == 200, spoken.text
    heard = httpx.post(server.url + "/v1/audio/transcriptions", timeout=300,
                       files={"file": ("a.wav", spoken.content)},
                       data={"model": "whisper-1", "language": "en"})  # fmt: skip
    assert heard.status_code == 200, heard.text
    text = heard.json()["text"].lower().replace(",", "")
    assert "1234" in text or "thousand" in text, text
    # read as Japanese the dollars were lost: Whisper heard "1234.56" (English: "$1234.56")
    assert "$" in text or "dollar" in text, text


@pytest.mark.parametrize(
    "over",
    [{}, {"stream_format": "sse"}, {"stream": True}, {"timestamps": True}, {"lang": "ja"},
     {"lang": "ja", "timestamps": True}],
    ids=["whole", "sse", "stream", "timestamps", "lang-ja", "lang-ja-timestamps"],
)  # fmt: skip
def test_digits_alone_are_held_to_the_spoken_length_cap(server: LiveServer, over: dict) -> None:
    r = _speech(server, DIGITS, **over)
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert (err["code"], err["param"]) == ("string_above_max_length", "input"), err


def test_wyoming_digits_alone_are_held_to_the_cap(server: LiveServer) -> None:
    async def main() -> list[Any]:
        async with client(server.wyoming_port) as c:
            await c.write_event(Synthesize(DIGITS).event())
            return await read_until(c, "audio-stop")

    events = asyncio.run(main())
    assert events[-1].type == "error", [e.type for e in events]
    assert events[-1].data["code"] == "string_above_max_length", json.dumps(events[-1].data)


def test_no_letters_follow_the_request_then_the_deployment_default() -> None:
    assert detect_lang("$1,234.56", ["jf_alpha"], "en-us", None) == "en-us"
    assert detect_lang("3 + 4 = 7", ["jf_alpha"], "fr-fr", None) == "fr-fr"
    assert detect_lang("$1,234.56", ["jf_alpha"], "en-us", "ja") == "ja"
    # text with letters still follows its script, then the voice
    assert detect_lang("3がつ", ["af_heart"], "en-us", None) == "ja"
    assert detect_lang("Hello 3", ["ff_siwis"], "en-us", None) == "fr-fr"


def test_japanese_prose_at_the_limit_is_within_the_cap(server: LiveServer) -> None:
    """The Japanese reading is measured by its phonemes (no spoken text to count): 4,096
    characters of prose, even of kanji compounds, stay under 4x; digits (4.5 a digit) do not."""
    engine = server.gateway.models["kokoro"].engine
    prose = "今日は朝から雨が降っていたので、私は図書館で本を読むことにしました。"
    kanji = "東京都庁舎建設計画審議委員会議事録要約報告書提出期限延長申請手続説明会開催案内。"
    for text in (prose, kanji):
        text = (text * (4096 // len(text) + 1))[:4096]
        units = engine.plan(text, "jf_alpha", 1.0, "ja", max_spoken_chars=4 * 4096)
        assert sum(len(u.phonemes) for u in units) > 2 * 4096  # really read, really long
