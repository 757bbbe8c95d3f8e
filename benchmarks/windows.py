"""The CPU transcription path against the raw call, in one process: where the time of a long
clip goes when it is cut into windows.

    python -m benchmarks.windows [SECONDS ...] [--runs N]

Builds each clip as the report does (the pool's sentences spoken by Kokoro, 0.6 s pauses, cut
to SECONDS; cached), then times, interleaved on one loaded Whisper model, the raw call
(`transcribe(vad_filter=True)` on the whole clip, as `benchmarks.raw`) and the gateway's
engine path (`plan_windows`, then one `WhisperEngine.run` per window, later windows with the
language of the first, as a transcription on the CPU lane runs them). Prints each clip's
windows (seconds of speech) and the medians of CPU and wall time of both sides, and their ratio.
No HTTP and no scheduler: what it shows is the windows' cost, not the server's.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from statistics import median
from typing import Any

import numpy as np

from gateway.audio.decode import decode_audio
from gateway.audio.encode import encode_audio
from gateway.config import Settings
from gateway.engines.base import Device, Lane
from gateway.engines.whisper import SAMPLE_RATE, TranscribeUnit, WhisperEngine, plan_windows

from .clips import POOL, VOICE, cache_dir


def clip_16k(seconds: float, pause_s: float = 0.6) -> np.ndarray:
    """POOL's sentences with pauses, cut to `seconds`, at 16 kHz (cached as .npy)."""
    key = hashlib.sha256(f"{VOICE}\n{pause_s}\n{seconds}\n{POOL}".encode()).hexdigest()[:16]
    path = cache_dir() / f"windows-{seconds:g}s-{key}.npy"
    if path.is_file():
        return np.load(path)
    from gateway.engines.kokoro import KokoroEngine

    kokoro = KokoroEngine("kokoro", Settings().models.dir / "kokoro")
    handle = kokoro.load(Device(Lane.cpu, 0, 2))
    parts, total, i = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        speech = np.concatenate(
            [kokoro.run(handle, u) for u in kokoro.plan(POOL[i % len(POOL)], VOICE, 1.0)]
        )
        audio = decode_audio(encode_audio(speech, "wav", 24000))
        parts += [audio, np.zeros(int(pause_s * SAMPLE_RATE), np.float32)]
        total += len(audio) + len(parts[-1])
        i += 1
    clip = np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]
    np.save(path, clip)
    return clip


def gateway_path(engine: WhisperEngine, handle: Any, audio: np.ndarray, window_s: float) -> None:
    windows = plan_windows(audio, window_s)
    language = None
    for win in windows:
        unit = TranscribeUnit(
            audio=win.audio(audio),
            offset_s=win.start / SAMPLE_RATE,
            pieces=tuple((a, b - a) for a, b in win.pieces),
            vad_filter=not win.pieces,
            language=language,
        )
        language = engine.run(handle, unit).language or language


def raw_call(handle: Any, audio: np.ndarray) -> None:
    segments, _ = handle.transcribe(audio, beam_size=5, vad_filter=True)
    "".join(s.text for s in segments)  # decoding happens here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.windows")
    parser.add_argument("seconds", nargs="*", type=float, default=[48.0, 60.0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    settings = Settings()
    clips = {s: clip_16k(s) for s in args.seconds}
    engine = WhisperEngine("whisper-base", settings.models.dir / "whisper-base", multilingual=True)
    handle = engine.load(Device(Lane.cpu, 0, settings.scheduler.cores))
    window_s = settings.whisper.window_s
    for s, audio in clips.items():
        speech = [
            sum(b - a for a, b in w.pieces) / SAMPLE_RATE for w in plan_windows(audio, window_s)
        ]
        print(f"{s:g} s clip: windows of {', '.join(f'{x:.1f}' for x in speech)} s of speech")
    times: dict[tuple[float, str], list[tuple[float, float]]] = {}
    sides = {
        "raw": lambda a: raw_call(handle, a),
        "gateway": lambda a: gateway_path(engine, handle, a, window_s),
    }
    for run in range(args.runs + 1):  # the first round warms both sides and is not counted
        for s, audio in clips.items():
            for side, call in sides.items():
                c0, t0 = time.process_time(), time.perf_counter()
                call(audio)
                if run:
                    times.setdefault((s, side), []).append(
                        (time.process_time() - c0, time.perf_counter() - t0)
                    )
    for s in clips:
        raw, gw = times[(s, "raw")], times[(s, "gateway")]
        cpu = median(c for c, _ in gw) / median(c for c, _ in raw)
        wall = median(w for _, w in gw) / median(w for _, w in raw)
        print(
            f"{s:g} s clip, median of {args.runs}: raw {median(c for c, _ in raw):.2f} s CPU "
            f"({median(w for _, w in raw):.2f} s wall), gateway {median(c for c, _ in gw):.2f} s CPU "
            f"({median(w for _, w in gw):.2f} s wall): {cpu:.2f}x CPU, {wall:.2f}x wall"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
