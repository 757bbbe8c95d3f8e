"""The raw library calls the gateway is compared with, in a child process of their own.

`python -m benchmarks.raw KOKORO_DIR WHISPER_DIR THREADS [COMPUTE_TYPE] [spinning]` loads
Kokoro (kokoro_onnx on an ONNX Runtime session with the same model files, thread count and
session options as the gateway's CPU lane: idle threads sleep) and Whisper (faster_whisper's
WhisperModel, same compute type and threads), then answers one JSON command per stdin line.
`spinning` gives the Kokoro session ONNX Runtime's default instead (idle threads spin, as a
plain kokoro_onnx user gets), to show that baseline too; WHISPER_DIR `-` loads no Whisper.

    {"op": "speech", "text": ..., "voice": ..., "lang": "en-us"}   -> {"s", "cpu", "audio_s"}
    {"op": "transcribe", "path": ..., "beam_size": 5, "vad": true, "language": null,
     "segments": 1, "threshold": 0.5}                              -> {"s", "cpu", "text"}

(`segments`, `threshold`: faster-whisper's language_detection_segments and _threshold, its
defaults when left out; the gateway's are what the overhead section compares a request that names
no language with.)

(`s`: wall seconds; `cpu`: CPU seconds of the process, all threads.)
    {"op": "memory"}                                               -> {"VmHWM": MiB, "VmRSS": MiB}

A process of its own keeps its memory figures clean and lets the caller interleave raw and
gateway runs, so a change in background load hits both sides alike.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _load(
    kokoro_dir: Path, whisper_dir: Path | None, threads: int, compute_type: str, spinning: bool
) -> tuple[Any, Any]:
    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    from gateway.engines.kokoro import cpu_session_options, find_files

    model_path, voices_path = find_files(kokoro_dir)
    if spinning:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    else:
        options = cpu_session_options(threads)
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    kokoro = Kokoro.from_session(session, str(voices_path))
    if whisper_dir is None:
        return kokoro, None
    from faster_whisper import WhisperModel

    whisper = WhisperModel(
        str(whisper_dir),
        device="cpu",
        compute_type=compute_type,
        cpu_threads=threads,
        num_workers=1,
    )
    return kokoro, whisper


def _handle(cmd: dict[str, Any], kokoro: Any, whisper: Any) -> dict[str, Any]:
    from .server import proc_memory

    op = cmd.get("op")
    if op == "speech":
        t0, c0 = time.perf_counter(), time.process_time()
        audio, rate = kokoro.create(
            cmd["text"], voice=cmd["voice"], speed=1.0, lang=cmd.get("lang", "en-us")
        )
        return {
            "s": time.perf_counter() - t0,
            "cpu": time.process_time() - c0,
            "audio_s": len(audio) / rate,
        }
    if op == "transcribe":
        t0, c0 = time.perf_counter(), time.process_time()
        segments, info = whisper.transcribe(
            cmd["path"],
            beam_size=cmd.get("beam_size", 5),
            vad_filter=cmd.get("vad", True),
            language=cmd.get("language"),
            language_detection_segments=cmd.get("segments", 1),
            language_detection_threshold=cmd.get("threshold", 0.5),
        )
        text = " ".join(s.text.strip() for s in segments)  # decoding happens here
        return {
            "s": time.perf_counter() - t0,
            "cpu": time.process_time() - c0,
            "text": text,
            "duration": info.duration,
        }
    if op == "memory":
        import os

        return proc_memory(os.getpid())
    return {"error": f"unknown op {op!r}"}


def serve(argv: list[str]) -> int:
    kokoro_dir, threads = Path(argv[0]), int(argv[2])
    whisper_dir = None if argv[1] == "-" else Path(argv[1])
    compute_type = argv[3] if len(argv) > 3 else "int8"
    spinning = len(argv) > 4 and argv[4] == "spinning"
    kokoro, whisper = _load(kokoro_dir, whisper_dir, threads, compute_type, spinning)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            reply = _handle(cmd, kokoro, whisper)
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1:]))
