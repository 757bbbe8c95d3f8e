"""The Wyoming section of `python -m benchmarks report`: a streamed three-sentence reply's time to its
first audio over Wyoming against the same text over HTTP streaming (one gateway, runs taken in
turn), and a 3 s voice command's transcript latency after `audio-stop`, idle and while two
batch transcriptions loop over HTTP (the sharing goal: p95 within 1.1x idle)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from . import clips
from .client import BatchLoop, speech, stream_speech, summary, transcribe
from .server import GatewayProcess, free_port

COMMAND = "Switch off the lights in the kitchen."
COMMAND_S = 3.0
REPLY_PIECES = 5  # Home Assistant streams an agent's reply in pieces; five here
TTFA_GOAL = 1.05  # Wyoming's first audio within 5 % of HTTP streaming's
SHARING_GOAL = 1.1  # p95 under batch load within 10 % of idle


def _pieces(text: str, n: int = REPLY_PIECES) -> list[str]:
    """Cut text into n pieces at arbitrary points (not at sentence ends), as a stream would."""
    cuts = [round(len(text) * i / n) for i in range(n + 1)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


async def _first_audio(port: int, text: str, voice: str) -> float:
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=600) as c:
        t0 = time.perf_counter()
        await c.write_event(SynthesizeStart(voice=SynthesizeVoice(voice)).event())
        for piece in _pieces(text):
            await c.write_event(SynthesizeChunk(piece).event())
        await c.write_event(SynthesizeStop().event())
        first = None
        while True:
            event = await c.read_event()
            if event is None or event.type == "error":
                raise RuntimeError(f"wyoming synthesis failed: {event}")
            if event.type == "audio-chunk" and first is None:
                first = time.perf_counter() - t0
            if event.type == "synthesize-stopped":
                assert first is not None
                return first


async def _transcript_after_stop(port: int, pcm16k: bytes) -> float:
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=600) as c:
        await c.write_event(Transcribe(language="en").event())
        await c.write_event(AudioStart(16000, 2, 1).event())
        for i in range(0, len(pcm16k), 2048):
            await c.write_event(AudioChunk(16000, 2, 1, pcm16k[i : i + 2048]).event())
        t0 = time.perf_counter()
        await c.write_event(AudioStop().event())
        while True:
            event = await c.read_event()
            if event is None or event.type == "error":
                raise RuntimeError(f"wyoming transcription failed: {event}")
            if event.type == "transcript":
                return time.perf_counter() - t0


def run(quick: bool, logs: Path, say: Any) -> dict[str, Any]:
    runs = 2 if quick else 10
    port = free_port()
    reply = " ".join(clips.POOL[4:7])  # three sentences, as the streaming section's
    with GatewayProcess({"GATEWAY_WYOMING__PORT": str(port)}, "wyoming", logs, quiet=True) as gw:
        base = gw.base_url
        command = clips.padded_pcm16(base, COMMAND, COMMAND_S, 16000)
        batch_clips = [clips.encode(*clips.build_clip(base, 4.0 if quick else 30.0, i * 6), "mp3")
                       for i in range(2)]  # fmt: skip
        wy, http = [], []
        with httpx.Client(timeout=600) as client:
            speech(client, base, clips.POOL[0])  # load Kokoro
            asyncio.run(_transcript_after_stop(port, command))  # load Whisper
            say(f"wyoming: first audio x{runs}, Wyoming and HTTP in turn")
            asyncio.run(_first_audio(port, reply, clips.VOICE))  # warm both paths once
            stream_speech(client, base, reply)
            for _ in range(runs):
                wy.append(asyncio.run(_first_audio(port, reply, clips.VOICE)))
                http.append(stream_speech(client, base, reply)[0])
        say(f"wyoming: transcript after audio-stop x{runs}, idle then under two batch loops")
        idle = [asyncio.run(_transcript_after_stop(port, command)) for _ in range(runs)]
        loop = BatchLoop(base, batch_clips, 4.0 if quick else 30.0, loops=2).start()
        try:
            while not loop.records and not loop.errors:  # both loops are busy once one finished
                time.sleep(0.2)
            loaded = [asyncio.run(_transcript_after_stop(port, command)) for _ in range(runs)]
        finally:
            loop.stop(wait_s=120)
        with httpx.Client(timeout=600) as client:
            transcribe(client, base, batch_clips[0], "check.mp3")  # still serving HTTP
    ttfa: dict[str, Any] = {"wyoming": summary(wy), "http": summary(http)}
    ttfa |= {"wyoming_runs": wy, "http_runs": http}
    ttfa["ratio_p50"] = ttfa["wyoming"]["p50"] / ttfa["http"]["p50"]
    stt: dict[str, Any] = {"idle": summary(idle), "loaded": summary(loaded)}
    stt |= {"idle_runs": idle, "loaded_runs": loaded, "batch_errors": loop.errors[:5]}
    stt["ratio_p95"] = stt["loaded"]["p95"] / stt["idle"]["p95"]
    return {"reply_chars": len(reply), "command_s": COMMAND_S, "ttfa": ttfa, "stt": stt}


def _f(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def render(w: dict[str, Any] | None) -> list[str]:
    if not w:
        return []
    t, s = w["ttfa"], w["stt"]
    met = {True: "met", False: "**not met**"}
    return [
        "## 7. Wyoming (Home Assistant)",
        "",
        f"A {w['reply_chars']}-character three-sentence reply streamed over Wyoming in "
        f"{REPLY_PIECES} text chunks (`synthesize-start` ... `synthesize-stop`) against the same "
        'text over HTTP streaming (`"stream": true`), one gateway, runs in turn; and a '
        f"{w['command_s']:g} s voice command (16 kHz, 16-bit chunks of 1024 samples) from "
        "`audio-stop` to `transcript`, idle and while two batch transcriptions loop over HTTP.",
        "",
        "| | p50 s | p95 s | runs |",
        "|---|---|---|---|",
        f"| first audio, Wyoming | {_f(t['wyoming']['p50'])} | {_f(t['wyoming']['p95'])} "
        f"| {t['wyoming']['n']} |",
        f"| first audio, HTTP streaming | {_f(t['http']['p50'])} | {_f(t['http']['p95'])} "
        f"| {t['http']['n']} |",
        f"| transcript after audio-stop, idle | {_f(s['idle']['p50'])} | {_f(s['idle']['p95'])} "
        f"| {s['idle']['n']} |",
        f"| transcript after audio-stop, 2 batch loops | {_f(s['loaded']['p50'])} "
        f"| {_f(s['loaded']['p95'])} | {s['loaded']['n']} |",
        "",
        f"- First audio, Wyoming / HTTP (p50): {t['ratio_p50']:.2f}x; goal <= {TTFA_GOAL}x: "
        f"{met[t['ratio_p50'] <= TTFA_GOAL]}.",
        f"- Transcript p95 under batch load / idle: {s['ratio_p95']:.2f}x; goal <= "
        f"{SHARING_GOAL}x: {met[s['ratio_p95'] <= SHARING_GOAL]}.",
        "",
    ]
