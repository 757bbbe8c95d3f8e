"""The realtime section of `python -m benchmarks report`: a 3 s spoken turn's latency over the Realtime
WebSocket (`/v1/realtime?intent=transcription`) from the end of speech to its `completed` event,
idle and while two batch transcriptions loop over HTTP, against the same turn through
`POST /v1/audio/transcriptions`. Goals: the realtime turn within 1.1x the HTTP call on the same
audio, and its p95 under batch load within 1.1x idle.

The end of speech is the client's `input_audio_buffer.commit` (turn_detection null): the turn's
audio has been streamed before it, as a live client streams while the user speaks, so what is
timed is what the user waits for. Server VAD would add its silence_duration_ms (500 ms by
default) of listening for the pause on top; that wait is a setting, not work, so it is left out.
"""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from . import clips
from .client import AUTH, BatchLoop, summary, transcribe
from .server import GatewayProcess, load_average

TURN = "Please turn the volume down in the living room."
TURN_S = 3.0
RATE = 24000  # the Realtime API's audio/pcm rate
APPEND_S = 0.1  # 100 ms per append, as OpenAI's examples send
MODEL = "whisper-1"
QUICK_MODEL = "whisper-tiny.en"  # the quick run is a smoke test: the same small model both ways
HTTP_GOAL = 1.1  # the realtime turn within 10 % of the HTTP call on the same audio
SHARING_GOAL = 1.1  # p95 under batch load within 10 % of idle
DONE = "conversation.item.input_audio_transcription.completed"


class RealtimeSession:
    """One transcription session, turns committed by the client."""

    def __init__(self, base: str, model: str = MODEL) -> None:
        url = base.replace("http://", "ws://", 1) + "/v1/realtime?intent=transcription"
        self.ws: ClientConnection = connect(url, additional_headers=AUTH, open_timeout=60,
                                            max_size=None)  # fmt: skip
        self.ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"model": model},  # no language, like the HTTP call
                "turn_detection": None}}}}))  # fmt: skip
        self._until("session.updated")

    def _until(self, kind: str, item: str | None = None) -> dict[str, Any]:
        while True:
            event = json.loads(self.ws.recv(timeout=600))
            if event["type"] == "error" or event["type"].endswith(".failed"):
                raise RuntimeError(f"realtime: {event}")
            if event["type"] == kind and (item is None or event.get("item_id") == item):
                return dict(event)

    def turn(self, pcm24k: bytes) -> tuple[float, str]:
        """Stream the turn in 100 ms appends, commit it (the end of speech), and wait for its
        transcript: (seconds from the commit to `completed`, the transcript)."""
        step = int(RATE * APPEND_S) * 2
        for i in range(0, len(pcm24k), step):
            chunk = base64.b64encode(pcm24k[i : i + step]).decode()
            self.ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        t0 = time.perf_counter()
        self.ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        item = self._until("input_audio_buffer.committed")["item_id"]
        done = self._until(DONE, item)
        return time.perf_counter() - t0, str(done.get("transcript", ""))

    def close(self) -> None:
        self.ws.close()


def _wav(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def run(quick: bool, logs: Path, say: Any) -> dict[str, Any]:
    runs = 2 if quick else 10
    clip_s = 4.0 if quick else 30.0
    model = QUICK_MODEL if quick else MODEL
    load_before = load_average()
    with GatewayProcess({}, "realtime", logs, quiet=True) as gw:
        base = gw.base_url
        pcm = clips.padded_pcm16(base, TURN, TURN_S, RATE)
        wav = _wav(pcm, RATE)  # the same audio for the HTTP call
        batch_clips = [clips.encode(*clips.build_clip(base, clip_s, i * 6), "mp3")
                       for i in range(2)]  # fmt: skip
        rt, http, texts = [], [], []
        with httpx.Client(timeout=600) as client:
            session = RealtimeSession(base, model)
            try:
                session.turn(pcm)  # loads Whisper; both paths once more, warm
                transcribe(client, base, wav, "turn.wav", model=model)
                say(f"realtime: {TURN_S:g} s turn x{runs}, WebSocket and HTTP in turn, idle")
                for _ in range(runs):
                    seconds, text = session.turn(pcm)
                    rt.append(seconds)
                    texts.append(text)
                    http.append(transcribe(client, base, wav, "turn.wav", model=model)[0])
                say(f"realtime: {TURN_S:g} s turn x{runs} under two batch loops")
                loop = BatchLoop(base, batch_clips, clip_s, loops=2).start()
                try:
                    while not loop.records and not loop.errors:  # both loops busy once one ended
                        time.sleep(0.2)
                    loaded = [session.turn(pcm)[0] for _ in range(runs)]
                finally:
                    loop.stop(wait_s=120)
            finally:
                session.close()
    res: dict[str, Any] = {"turn_s": TURN_S, "text": TURN, "model": model, "transcripts": texts[:3]}
    res |= {"realtime": summary(rt), "http": summary(http), "loaded": summary(loaded)}
    res |= {"realtime_runs": rt, "http_runs": http, "loaded_runs": loaded}
    res["batch_errors"] = loop.errors[:5]
    res["load"] = {"before": load_before, "after": load_average()}  # a shared machine shows here
    res["ratio_http_p50"] = res["realtime"]["p50"] / res["http"]["p50"]
    res["ratio_loaded_p95"] = res["loaded"]["p95"] / res["realtime"]["p95"]
    return res


def _f(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def _load(r: dict[str, Any]) -> list[str]:
    if "load" not in r:
        return []
    b, a = r["load"]["before"], r["load"]["after"]
    return [f"Load average (1/5/15 min) before {b[0]:.2f} / {b[1]:.2f} / {b[2]:.2f}, after "
            f"{a[0]:.2f} / {a[1]:.2f} / {a[2]:.2f}.", ""]  # fmt: skip


def render(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    met = {True: "met", False: "**not met**"}
    rows = [("realtime turn, idle", r["realtime"]), ("same audio, HTTP POST, idle", r["http"]),
            ("realtime turn, 2 batch loops", r["loaded"])]  # fmt: skip
    return [
        "## 9. Realtime transcription (WebSocket)",
        "",
        f"A {r['turn_s']:g} s turn (“{r['text']}” spoken by the gateway's TTS, 24 kHz PCM16; "
        f"model `{r.get('model', MODEL)}`) "
        "streamed over `/v1/realtime?intent=transcription` in 100 ms appends with "
        "`turn_detection: null`, timed from the client's `input_audio_buffer.commit` (the end of "
        "speech) to `conversation.item.input_audio_transcription.completed`; one session, runs "
        "in turn with the same audio as a WAV through `POST /v1/audio/transcriptions` (whole "
        "request: upload, decode, transcription); then the realtime turn while two batch "
        "transcriptions loop over HTTP. Server VAD would add its `silence_duration_ms` "
        "(default 500 ms) of listening for the pause; that is a setting, not work, and not "
        "timed here.",
        "",
        *_load(r),
        "| | p50 s | p95 s | runs |",
        "|---|---|---|---|",
        *[f"| {label} | {_f(s['p50'])} | {_f(s['p95'])} | {s['n']} |" for label, s in rows],
        "",
        f"- Realtime turn / HTTP call on the same audio (p50): {r['ratio_http_p50']:.2f}x; goal "
        f"<= {HTTP_GOAL}x: {met[r['ratio_http_p50'] <= HTTP_GOAL]}.",
        f"- Realtime turn p95 under batch load / idle: {r['ratio_loaded_p95']:.2f}x; goal <= "
        f"{SHARING_GOAL}x: {met[r['ratio_loaded_p95'] <= SHARING_GOAL]}.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    """This section alone (it is also part of `python -m benchmarks report`): prints its Markdown and
    writes the raw figures as JSON to --out."""
    import argparse
    import sys
    import tempfile

    p = argparse.ArgumentParser(prog="python -m benchmarks.realtime")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="raw results (JSON)")
    args = p.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="gateway-bench-realtime-"))
    res = run(args.quick, logs, lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    print("\n".join(render(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
