"""Bad-input corpus: every malformed, hostile or odd request gets a 4xx in the OpenAI error shape
(or a correct 200 where the input is legitimately valid), never a 5xx, and the server answers a
normal request afterwards.

The audio inputs are generated here with numpy and PyAV (nothing is downloaded); the speech
phrase inside them is made by the gateway's own Kokoro once per module.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.audio.decode import decode_audio
from gateway.config import Settings

from ..support.media import mux

SPEECH = "/v1/audio/speech"
STT = "/v1/audio/transcriptions"
TRANSLATE = "/v1/audio/translations"
PHRASE = "The quick brown fox jumps over the lazy dog."
PHRASE_WORDS = ("quick", "brown", "fox", "jump", "lazy", "dog")
RNG = np.random.default_rng(1234)


# -- helpers ------------------------------------------------------------------------------------


def assert_openai_error(r: Any) -> dict:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert isinstance(err["type"], str) and err["type"], err
    return err


def encode(samples: np.ndarray, rate: int, fmt: str = "wav", codec: str | None = None,
           bit_rate: int | None = None) -> bytes:  # fmt: skip
    """float32 (channels, n) in [-1, 1] -> bytes of a container, with PyAV."""
    samples = np.atleast_2d(np.asarray(samples, np.float32))
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[samples.shape[0]]
    codec = codec or {"wav": "pcm_s16le", "mp3": "libmp3lame", "ogg": "libopus",
                      "flac": "flac", "webm": "libopus", "mp4": "aac"}[fmt]  # fmt: skip
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        if bit_rate:
            stream.bit_rate = bit_rate
        ctx = stream.codec_context
        stream.format = ctx.codec.audio_formats[0].name
        size = ctx.frame_size or 1024

        def frames() -> Iterator[av.AudioFrame]:
            for i in range(0, samples.shape[1], size):
                chunk = samples[:, i : i + size]
                if ctx.frame_size and chunk.shape[1] < size:
                    chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
                frame = av.AudioFrame(format="flt", layout=layout, samples=chunk.shape[1])
                frame.planes[0].update(np.ascontiguousarray(chunk.T).tobytes())
                frame.sample_rate, frame.pts = rate, i
                yield frame

        mux(out, stream, frames())
    return buf.getvalue()


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    n = int(len(x) * dst / src)
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def video_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        images = (np.full((48, 64, 3), i * 20, np.uint8) for i in range(10))
        mux(out, stream, (av.VideoFrame.from_ndarray(img, format="rgb24") for img in images))
    return buf.getvalue()


class Ctx:
    """What case builders need: the normal client and, lazily, the spoken phrase."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._phrase: np.ndarray | None = None
        self._cache: dict[str, bytes] = {}

    @property
    def phrase(self) -> np.ndarray:
        """The phrase spoken by the gateway's own TTS, 16 kHz mono float32."""
        if self._phrase is None:
            r = self.client.post(SPEECH, json={"model": "tts-1", "voice": "alloy", "input": PHRASE,
                                               "response_format": "wav"})  # fmt: skip
            assert r.status_code == 200, r.text
            self._phrase = np.concatenate([np.zeros(8000, np.float32), decode_audio(r.content),
                                           np.zeros(8000, np.float32)])  # fmt: skip
        return self._phrase

    def cached(self, key: str, make: Callable[[], bytes]) -> bytes:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def speech_wav(self) -> bytes:
        return self.cached("wav16", lambda: encode(self.phrase[None], 16000, "wav"))

    def speech_mp3(self) -> bytes:
        return self.cached("mp3", lambda: encode(self.phrase[None], 16000, "mp3"))

    def speech_ogg(self) -> bytes:
        return self.cached("ogg", lambda: encode(resample(self.phrase, 16000, 48000)[None],
                                                 48000, "ogg"))  # fmt: skip


# -- the corpus ---------------------------------------------------------------------------------

Build = Callable[[Ctx], dict]
Check = Callable[[Any, Ctx], None]


@dataclass
class Case:
    id: str
    build: Build
    expect: frozenset[int]
    check: Check | None = None
    app: str = "default"  # "small": max_upload_mb = 1


CASES: list[Case] = []


def case(
    id: str, build: Build, *expect: int, check: Check | None = None, app: str = "default"
) -> None:
    CASES.append(Case(id, build, frozenset(expect), check, app))


BASE = {"model": "tts-1", "voice": "alloy", "input": "Hi."}
_DROP = object()  # speech(field=_DROP): leave the field out


def speech(**over: Any) -> Build:
    body = {**BASE, **over}
    for k in [k for k, v in over.items() if v is _DROP]:
        body.pop(k)
    return lambda _ctx: {"method": "POST", "url": SPEECH, "json": body}


def speech_raw(content: bytes | str, ctype: str | None = "application/json",
               headers: dict | None = None) -> Build:  # fmt: skip
    hdrs = {**({"content-type": ctype} if ctype else {}), **(headers or {})}
    data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    return lambda _ctx: {"method": "POST", "url": SPEECH, "content": data, "headers": hdrs}


def speech_headers(headers: dict[str, str]) -> Build:
    return lambda _ctx: {"method": "POST", "url": SPEECH, "json": BASE, "headers": headers}


def is_audio(mime: str, magic: bytes | None = None) -> Check:
    def check(r: Any, _ctx: Ctx) -> None:
        assert r.headers["content-type"].startswith(mime), r.headers
        assert len(r.content) > 100
        if magic is not None:
            assert r.content.startswith(magic)

    return check


MP3 = is_audio("audio/mpeg")


def code_is(code: str, param: str | None = None) -> Check:
    def check(r: Any, _ctx: Ctx) -> None:
        err = r.json()["error"]
        assert err["code"] == code, err
        if param is not None:
            assert err["param"] == param, err

    return check


# malformed JSON
for name, raw in {
    "open-brace": "{",
    "missing-value": '{"model": "tts-1", "voice": "alloy", "input": }',
    "not-json": "not json at all",
    "empty-body": "",
    "null": "null",
    "empty-array": "[]",
    "array-of-object": '[{"model": "tts-1", "voice": "alloy", "input": "Hi."}]',
    "string": '"Hi."',
    "number": "123",
    "true": "true",
    "truncated": '{"model": "tts-1", "voice": "alloy", "input": "Hello',
    "trailing-garbage": '{"model": "tts-1", "voice": "alloy", "input": "Hi."} xyz',
    "single-quotes": "{'model': 'tts-1', 'voice': 'alloy', 'input': 'Hi.'}",
    "trailing-comma": '{"model": "tts-1", "voice": "alloy", "input": "Hi.",}',
    "comment": '{"model": "tts-1", /* c */ "voice": "alloy", "input": "Hi."}',
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
    "deep-object": '{"a":' * 50_000 + "1" + "}" * 50_000,
}.items():
    case(f"speech-json-{name}", speech_raw(raw), 400)
case(
    "speech-json-invalid-utf8",
    speech_raw(b'{"model":"tts-1","voice":"alloy","input":"\xff\xfe"}'),
    400,
)
case("speech-json-nul-bytes", speech_raw(b"\x00" * 64), 400)
case("speech-json-over-1mib", speech_raw(json.dumps({**BASE, "input": "a" * (1 << 20)})), 413)
case("speech-content-type-text", speech_raw(json.dumps(BASE), "text/plain"), 400)
case("speech-content-type-form", lambda _c: {"method": "POST", "url": SPEECH, "data": BASE}, 400)
case(
    "speech-content-type-multipart",
    lambda _c: {"method": "POST", "url": SPEECH, "files": {"input": ("a.txt", b"Hi.")}},
    400,
)
case("speech-no-content-type", speech_raw(json.dumps(BASE), None), 400)
case(
    "speech-json-nan-speed",
    speech_raw('{"model":"tts-1","voice":"alloy","input":"Hi.","speed":NaN}'),
    400,
)
case(
    "speech-json-infinity-speed",
    speech_raw('{"model":"tts-1","voice":"alloy","input":"Hi.","speed":Infinity}'),
    400,
)
case(
    "speech-json-minus-infinity-speed",
    speech_raw('{"model":"tts-1","voice":"alloy","input":"Hi.","speed":-Infinity}'),
    400,
)
case(
    "speech-json-huge-int-speed",
    speech_raw('{"model":"tts-1","voice":"alloy","input":"Hi.","speed":1' + "0" * 400 + "}"),
    400,
)

# wrong types
for fld, values in {
    "input": [123, None, [], {}, True, 1.5, ["Hi."]],
    "voice": [1, None, [], {}, ["alloy"]],
    "model": [1, None, [], {"id": "tts-1"}],
    "speed": ["fast", "1.0", [], {}, True, None],
    "stream": ["maybe", "true", 0, 2, []],
    "response_format": [1, None, [], "MP3", "mp4", "ogg", "", "wav ", "mp3\x00"],
    "stream_format": ["json", 1],
    "lang": [123, "x" * 17],
    "instructions": [123, ["x"]],
}.items():
    for i, value in enumerate(values):
        case(f"speech-type-{fld}-{i}-{type(value).__name__}", speech(**{fld: value}), 400)

# missing and extra fields
case("speech-missing-all", lambda _c: {"method": "POST", "url": SPEECH, "json": {}}, 400)
for fld in ("input", "voice", "model"):
    case(f"speech-missing-{fld}", speech(**{fld: _DROP}), 400)
case("speech-extra-fields", speech(foo="bar", user="u-1", temperature=0.3, n=2), 200, check=MP3)

# unknown model
for i, model in enumerate(
    [
        "tts-2",
        "whisper-1",
        "whisper-base",
        " ",
        "KOKORO",
        "../../etc/passwd",
        "kokoro/../kokoro",
        "kokoro\x00",
        "%2e%2e%2f",
        "a" * 5000,
    ]
):
    case(f"speech-model-unknown-{i}", speech(model=model), 404, check=code_is("model_not_found"))
case("speech-model-empty", speech(model=""), 400)

# unknown voice and malformed mixes
for i, voice in enumerate(["nobody", " ", "../x", "jf_alpha/../x", "/etc/passwd", "alloy;rm -rf",
                           "ALLOY", "a+", "+b", "a(0)", "a(-1)+b", "a(x)", "alloy+", "+echo",
                           "alloy(0)", "alloy(-1)+echo", "alloy(x)", "alloy(1e9)", "alloy()+echo",
                           "alloy++echo", "alloy(1)(2)", "alloy(inf)", "alloy(nan)",
                           "+".join(["alloy"] * 9), "alloy(" + "9" * 400 + ")", "\u00e0lloy",
                           "alloy\x00", "alloy(0.0)+echo(0)"]):  # fmt: skip
    case(f"speech-voice-bad-{i}", speech(voice=voice), 400, check=code_is("invalid_voice", "voice"))
case("speech-voice-empty", speech(voice=""), 400)
# OpenAI's voice object, as current SDKs send it; its id is checked like the plain name
case("speech-voice-object", speech(voice={"id": "alloy"}), 200, check=MP3)
case("speech-voice-object-new-name", speech(voice={"id": "marin"}), 200, check=MP3)
case("speech-voice-object-unknown", speech(voice={"id": "voice_1234"}), 400,
     check=code_is("invalid_voice", "voice"))  # fmt: skip
for i, voice in enumerate([{"id": ""}, {"id": 1}, {"id": None}, {"name": "alloy"}, {"id": ["a"]}]):
    case(f"speech-voice-object-bad-{i}", speech(voice=voice), 400)
case("speech-voice-mix-weighted", speech(voice="alloy(2)+echo(1)"), 200, check=MP3)
case("speech-voice-mix-ids", speech(voice="jf_alpha + jm_kumo"), 200, check=MP3)

# speed
for i, spd in enumerate([0, 0.24, 4.01, -1, 1e308, -0.0, 100]):
    case(f"speech-speed-out-of-range-{i}", speech(speed=spd), 400)
case("speech-speed-min", speech(speed=0.25), 200, check=MP3)
case(
    "speech-speed-max",
    speech(speed=4.0, response_format="wav"),
    200,
    check=is_audio("audio/wav", b"RIFF"),
)

# text
for name, text in {
    "empty": "",
    "space": " ",
    "whitespace": "\n\t \r\n  ",
    "control-chars": "\x00\x01\x02\x07\x1b\x1f\x7f",
    "zero-width": "\u200b\u200c\u200d\ufeff",
    "bidi-overrides": "\u202e\u202d\u2066",
    "private-use": "\ue000\uf8ff",
    "over-limit": "a" * 4097,
    "far-over-limit": "word " * 100_000,
}.items():
    case(f"speech-text-{name}", speech(input=text), 400)
case(
    "speech-text-lone-surrogate",
    speech_raw('{"model": "tts-1", "voice": "alloy", "input": "\\ud800\\udfff\\ud800"}'),
    400,
)
# read aloud, 4096 digits are 20,475 characters: past 4x the input limit, a clear 400
case("speech-text-4096-digits", speech(input="Code " + "9" * 4091), 400,
     check=code_is("string_above_max_length", "input"))  # fmt: skip
case("speech-model-gpt-4o-mini-tts", speech(model="gpt-4o-mini-tts", instructions="Calmly."), 200,
     check=MP3)  # fmt: skip
case("speech-text-control-inside", speech(input="Hello\x00 wor\x07ld."), 200, check=MP3)
case("speech-text-emoji-inside", speech(input="Hi \U0001f600."), 200, check=MP3)
# Text with nothing to say is a short silence, not an error (chat clients send a reply's `---`
# or an emoji alone as a piece of it): tests/tasks/test_quiet_pieces.py
for name, text in {"emoji-only": "\U0001f600\U0001f389\U0001f680",
                   "punctuation-only": "...!?;:-"}.items():  # fmt: skip
    case(f"speech-text-{name}", speech(input=text), 200, check=MP3)
# exactly at the limit passes the length check (and then has nothing to say: cheap to run)
case("speech-text-at-limit", speech(input="." * 4096), 200, check=MP3)
case("speech-lang-unknown", speech(lang="xx-yy"), 400, check=code_is("invalid_lang", "lang"))
case("speech-lang-path", speech(lang="../../etc"), 400, check=code_is("invalid_lang", "lang"))

# headers
for i, value in enumerate(["urgent", "0", "high", "interactive; drop", "batch,interactive", "\t"]):
    if value.strip():
        case(f"speech-x-priority-bad-{i}", speech_headers({"X-Priority": value}), 400)
for i, value in enumerate(["abc", "-1", "0", "nan", "inf", "-inf", "1e10", "1,5", "0x10", "5s"]):
    case(f"speech-x-queue-timeout-bad-{i}", speech_headers({"X-Queue-Timeout": value}), 400)
case(
    "speech-headers-valid",
    speech_headers({"X-Priority": "BATCH", "X-Queue-Timeout": "30"}),
    200,
    check=MP3,
)


# -- transcriptions -----------------------------------------------------------------------------


def stt(file: Callable[[Ctx], bytes] | None = None, name: str = "audio.bin",
        data: dict | None = None, url: str = STT, files: Callable[[Ctx], list] | None = None,
        headers: dict | None = None, part_type: str | None = None) -> Build:  # fmt: skip
    def build(ctx: Ctx) -> dict:
        parts: list = files(ctx) if files else []
        if file is not None:
            parts.append(("file", (name, file(ctx), part_type) if part_type else (name, file(ctx))))
        return {"method": "POST", "url": url, "data": {"model": "whisper-1", **(data or {})},
                "files": parts or None, "headers": headers or {}}  # fmt: skip

    return build


def text_is(expected: str) -> Check:
    def check(r: Any, _ctx: Ctx) -> None:
        assert r.json()["text"] == expected, r.json()

    return check


def heard_phrase(r: Any, _ctx: Ctx) -> None:
    text = r.json()["text"].lower()
    assert sum(w in text for w in PHRASE_WORDS) >= 2, text


def wav_silence(ctx: Ctx) -> bytes:
    return ctx.cached("silence", lambda: encode(np.zeros((1, 3 * 16000), np.float32), 16000))


def tone_wav(_ctx: Ctx) -> bytes:
    return encode(tone(1.0, 16000)[None], 16000)


# multipart shape
case("stt-wrong-field-name", stt(files=lambda c: [("audio", ("a.wav", c.speech_wav()))]), 400)
case("stt-no-file", stt(), 400)
case("stt-no-file-no-fields", lambda _c: {"method": "POST", "url": STT,
                                           "files": {"x": ("", b"")}}, 400)  # fmt: skip
case(
    "stt-two-files",
    stt(wav_silence, files=lambda c: [("file", ("b.wav", c.speech_wav()))]),
    400,
    check=code_is("too_many_files", "file"),
)
case(
    "stt-file-as-text-field",
    lambda _c: {"method": "POST", "url": STT, "data": {"file": "abc", "model": "whisper-1"}},
    400,
)
case("stt-json-body", lambda _c: {"method": "POST", "url": STT, "json": {"file": "abc"}}, 400)
case("stt-urlencoded", lambda _c: {"method": "POST", "url": STT, "content": b"file=abc",
                                    "headers": {"content-type": "application/x-www-form-urlencoded"}},
     400)  # fmt: skip
case("stt-multipart-no-boundary", lambda _c: {"method": "POST", "url": STT, "content": b"abc",
                                               "headers": {"content-type": "multipart/form-data"}},
     400)  # fmt: skip
case(
    "stt-multipart-garbage",
    lambda _c: {
        "method": "POST",
        "url": STT,
        "content": b"\x00" * 100,
        "headers": {"content-type": "multipart/form-data; boundary=xyz"},
    },
    400,
)
case(
    "stt-multipart-unterminated",
    lambda _c: {
        "method": "POST",
        "url": STT,
        "content": b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
        "headers": {"content-type": "multipart/form-data; boundary=xyz"},
    },
    400,
)

# upload size (app with max_upload_mb = 1)
case(
    "stt-oversized-file",
    stt(lambda _c: b"\x00" * 1_500_000, "big.wav"),
    413,
    app="small",
    check=code_is("file_too_large", "file"),
)
case(
    "stt-oversized-body",
    stt(lambda _c: b"\x00" * 3_000_000, "big.wav"),
    413,
    app="small",
    check=code_is("request_too_large"),
)
case("stt-under-limit-ok", stt(wav_silence, "ok.wav"), 200, check=text_is(""), app="small")

# broken and non-audio files
NON_AUDIO = {
    "zero-length": b"",
    "one-byte": b"\x00",
    "random-bytes": RNG.bytes(50_000),
    "text": b"hello, this is not audio\n" * 100,
    "png": b"\x89PNG\r\n\x1a\n" + RNG.bytes(5000),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + RNG.bytes(5000),
    "gif": b"GIF89a" + RNG.bytes(2000),
    "pdf": b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n" + RNG.bytes(2000),
    "json": json.dumps({"audio": "base64..."}).encode(),
    "html": b"<!doctype html><html><body><audio src=x></audio></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
    "zip": b"PK\x03\x04" + RNG.bytes(2000),
    "gzip": b"\x1f\x8b\x08\x00" + RNG.bytes(2000),
    "elf": Path(sys.executable).read_bytes()[:8192],
    "riff-garbage-header": b"RIFF\xff\xff\xff\xffWAVEfmt " + RNG.bytes(100),
    "wav-header-only": encode(np.zeros((1, 16000), np.float32), 16000)[:44],
    "m3u8-playlist": b"#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n",
    "ffconcat": b"ffconcat version 1.0\nfile /etc/passwd\n",
    "sdp": b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=audio 9 RTP/AVP 0\n",
}
for name, blob in NON_AUDIO.items():
    case(
        f"stt-file-{name}",
        stt(lambda _c, b=blob: b, "recording.wav"),
        400,
        check=code_is("invalid_audio", "file"),
    )
case("stt-video-only-mp4", stt(lambda _c: video_only_mp4(), "clip.mp4"), 400)
case("stt-truncated-mp3-header", stt(lambda c: c.speech_mp3()[:10], "a.mp3"), 400)
case("stt-truncated-ogg-header", stt(lambda c: c.speech_ogg()[:30], "a.ogg"), 400)
# A file cut short or damaged in the middle still holds audio: transcribing what decodes is fine.
case("stt-truncated-mp3-half", stt(lambda c: c.speech_mp3()[: len(c.speech_mp3()) // 2], "a.mp3"),
     200, 400)  # fmt: skip
case("stt-truncated-wav-half", stt(lambda c: c.speech_wav()[: len(c.speech_wav()) // 2], "a.wav"),
     200, 400)  # fmt: skip


def _corrupt(data: bytes, start: float) -> bytes:
    b = bytearray(data)
    i = int(len(b) * start)
    b[i : i + 400] = RNG.bytes(400)
    return bytes(b)


case("stt-corrupt-mp3-middle", stt(lambda c: _corrupt(c.speech_mp3(), 0.5), "a.mp3"), 200, 400)
case("stt-corrupt-ogg-middle", stt(lambda c: _corrupt(c.speech_ogg(), 0.5), "a.ogg"), 200, 400)
case("stt-corrupt-ogg-start", stt(lambda c: _corrupt(c.speech_ogg(), 0.0), "a.ogg"), 200, 400)

# odd but valid audio
case("stt-silence", stt(wav_silence, "silence.wav"), 200, check=text_is(""))
# under 0.1 s: OpenAI's 400 audio_too_short
case("stt-very-short", stt(lambda _c: encode(np.zeros((1, 160), np.float32), 16000), "a.wav"),
     400, check=code_is("audio_too_short", "file"))  # fmt: skip
case("stt-one-sample", stt(lambda _c: encode(np.zeros((1, 1), np.float32), 16000), "a.wav"),
     400, check=code_is("audio_too_short", "file"))  # fmt: skip
case("stt-8khz-speech", stt(lambda c: encode(resample(c.phrase, 16000, 8000)[None], 8000), "a.wav"),
     200, check=heard_phrase)  # fmt: skip
case("stt-96khz-speech",
     stt(lambda c: encode(resample(c.phrase, 16000, 96000)[None], 96000), "a.wav"),
     200, check=heard_phrase)  # fmt: skip
case("stt-6-channel-speech",
     stt(lambda c: encode(np.tile(resample(c.phrase, 16000, 48000), (6, 1)), 48000, "flac"),
         "a.flac"), 200, check=heard_phrase)  # fmt: skip
case("stt-webm-named-wav-with-wrong-part-type",
     stt(lambda c: encode(resample(c.phrase, 16000, 48000)[None], 48000, "webm"),
         "recording.wav", part_type="image/png"), 200, check=heard_phrase)  # fmt: skip
case(
    "stt-full-scale-square-wave",
    stt(lambda _c: encode(np.sign(tone(2.0, 16000))[None] * 1.0, 16000), "a.wav"),
    200,
)
case("stt-float-wav-nan-inf",
     stt(lambda _c: encode(np.array([[np.nan, np.inf, -np.inf] * 5000], np.float32), 16000, "wav",
                           codec="pcm_f32le"), "a.wav"), 200, 400)  # fmt: skip
case("stt-tone", stt(tone_wav, "tone.wav"), 200)

# form fields
for i, fmt in enumerate(["mp3", "xml", "JSON", "text\x00", "srt "]):
    case(f"stt-response-format-bad-{i}", stt(tone_wav, data={"response_format": fmt}), 400)
# an empty form field counts as absent (FastAPI's form semantics): the default, json
case("stt-response-format-empty", stt(tone_wav, data={"response_format": ""}), 200)
for i, grains in enumerate([["char"], [""], ["word", "sentence"], ["WORD"]]):
    case(f"stt-granularity-bad-{i}",
         stt(tone_wav, data={"response_format": "verbose_json",
                             "timestamp_granularities[]": grains}), 400)  # fmt: skip
case("stt-granularity-without-verbose", stt(tone_wav, data={"timestamp_granularities[]": ["word"]}),
     400)  # fmt: skip
case(
    "stt-granularity-word-verbose",
    stt(
        lambda c: c.speech_wav(),
        data={"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]},
    ),
    200,
    check=lambda r, _c: (r.json()["words"] and r.json()["segments"]) or pytest.fail(r.text),
)
for i, model in enumerate(["tts-1", "kokoro", "whisper-2", "../../etc/passwd", "whisper-base/.."]):
    case(f"stt-model-unknown-{i}", stt(tone_wav, data={"model": model}), 404)
for i, lang in enumerate(["xx", "english", "../../etc", "e", "x" * 17]):
    case(f"stt-language-bad-{i}", stt(tone_wav, data={"language": lang}), 400)
for i, temp in enumerate(["hot", "2", "-1", "nan", "inf"]):
    case(f"stt-temperature-bad-{i}", stt(tone_wav, data={"temperature": temp}), 400)
case("stt-prompt-too-long", stt(tone_wav, data={"prompt": "p" * 2001}), 400)
case("stt-stream-bad", stt(tone_wav, data={"stream": "maybe"}), 400)
case("stt-x-priority-bad", stt(tone_wav, headers={"X-Priority": "now"}), 400)
case("stt-x-queue-timeout-bad", stt(tone_wav, headers={"X-Queue-Timeout": "-5"}), 400)
case("translate-bad-file", stt(lambda _c: b"not audio", url=TRANSLATE), 400)
case("translate-tts-model", stt(tone_wav, url=TRANSLATE, data={"model": "tts-1"}), 404)

# other routes
case("get-speech", lambda _c: {"method": "GET", "url": SPEECH}, 405)
case("put-transcriptions", lambda _c: {"method": "PUT", "url": STT}, 405)
case("unknown-route", lambda _c: {"method": "GET", "url": "/v1/nope"}, 404)
case("unknown-model-route", lambda _c: {"method": "GET", "url": "/v1/models/nope"}, 404)
case(
    "voices-unknown-model",
    lambda _c: {"method": "GET", "url": "/v1/audio/voices", "params": {"model": "nope"}},
    404,
)
case(
    "voices-stt-model",
    lambda _c: {"method": "GET", "url": "/v1/audio/voices", "params": {"model": "whisper-1"}},
    404,
)


# -- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def small_client():  # type: ignore[no-untyped-def]
    settings = Settings()
    settings.server.max_upload_mb = 1
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def ctx(client: TestClient) -> Ctx:
    return Ctx(client)


def test_corpus_size() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, request: pytest.FixtureRequest) -> None:
    target: TestClient = (
        request.getfixturevalue("small_client") if case.app == "small" else (ctx.client)
    )
    kwargs = case.build(ctx)
    r = target.request(**kwargs)
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert r.status_code in case.expect, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert_openai_error(r)
    if case.check is not None:
        case.check(r, ctx)
    # ...and the server still answers a normal request.
    ok = target.get("/v1/audio/voices")
    assert ok.status_code == 200 and ok.json()["voices"]


@pytest.mark.slow
def test_hour_long_upload(ctx: Ctx) -> None:
    """An hour of 8 kHz silence with a tone each minute and the phrase near the start and end:
    decoded, windowed by VAD and stitched, with the late segment's timestamp an hour in.
    (Measured on 2 cores: ~6 s to make, ~17 s to transcribe, so it runs by default.)"""
    rate = 8000
    x = np.zeros(rate * 3600, np.float32)
    beep = tone(1.0, rate)
    for s in range(0, len(x) - rate, rate * 60):
        x[s + rate * 10 : s + rate * 11] = beep
    spoken = resample(ctx.phrase, 16000, rate)
    for at in (5, 3570):
        x[at * rate : at * rate + len(spoken)] = spoken
    data = encode(x[None], rate, "mp3", bit_rate=16000)
    del x
    r = ctx.client.post(STT, files={"file": ("hour.mp3", data)},
                        data={"model": "whisper-1", "response_format": "verbose_json"})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["duration"] - 3600) < 2
    assert sum(w in body["text"].lower() for w in PHRASE_WORDS) >= 2, body["text"]
    starts = [s["start"] for s in body["segments"]]
    assert min(starts) < 10 and max(starts) > 3560, starts


def test_normal_requests_after_corpus(ctx: Ctx, client: TestClient) -> None:
    """After the whole corpus: speech and transcription still work, and no request got a 5xx."""
    r = client.post(SPEECH, json={"model": "tts-1", "voice": "alloy", "input": "Still here.",
                                  "response_format": "wav"})  # fmt: skip
    assert r.status_code == 200 and r.content.startswith(b"RIFF")
    r = client.post(STT, files={"file": ("a.wav", ctx.speech_wav())}, data={"model": "whisper-1"})
    assert r.status_code == 200
    heard_phrase(r, ctx)
    metrics = client.get("/metrics").text
    server_errors = [
        line
        for line in metrics.splitlines()
        if line.startswith("gateway_http_requests_total") and 'status="5' in line
    ]
    assert not server_errors, server_errors
