"""`python -m benchmarks gpu`: the GPU lane measured against the raw libraries on the same GPU.

Side by side in one run (ratios, not absolute timings, are what to compare between machines):
- speech: raw kokoro-onnx (int8 on CUDA as shipped; the float variant; the fp16 variant)
  against the gateway over HTTP: 8.7 s of audio, one sentence, the first request of a new length
  (the gateway with `gpu_precision` auto, and forced to fp32 for comparison);
- speech concurrency: 1, 4 and 8 requests at once against `kokoro.gpu_concurrency` 1 and 4
  (seconds of audio per second, p95 latency);
- transcription: raw faster-whisper (sequential; batched) against the gateway: a 48 s clip and a
  10-minute file;
- sharing: speech p95 while two batch transcriptions loop, against idle, and the batch jobs'
  throughput against their solo rate, for each `gpu_slots`;
- GPU memory per model (NVML) against its budget.
Writes JSON (every raw number) and, with --md, a Markdown report with met / not met per target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from . import DOCS
from .client import AUTH, BatchLoop, speech, summary, transcribe
from .clips import build_clip, encode
from .server import GatewayProcess

# About 8.7 s of audio with jf_alpha (the reference length).
TEXT = (
    "Every morning the old lighthouse keeper climbed the spiral stairs, polished the great "
    "lens, and wrote the weather in a worn leather book."
)
SENTENCE = "The quick brown fox jumps over the lazy dog."
VOICE = "jf_alpha"
# New lengths: each text is a new input shape for the model.
NEW_LENGTHS = [
    "Good morning.",
    "How are you today?",
    "The meeting starts at nine sharp.",
    "Please bring the blue folder and two pens.",
    "We walked along the river until the sun set.",
    "The small cafe on the corner serves the best coffee in town, everyone says.",
    "After the storm, the village gathered in the square to clear the fallen branches away.",
    "Our train was late again, so we missed the first half of the concert and had to wait outside.",
]


def _nvml_used_mib() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        return float(pynvml.nvmlDeviceGetMemoryInfo(h).used) / 2**20
    except Exception:
        return None


def _gpu_name() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        driver = pynvml.nvmlSystemGetDriverVersion()
        return f"{name if isinstance(name, str) else name.decode()} (driver {driver})"
    except Exception as exc:
        return f"no GPU ({exc})"


def _timed(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# -- raw libraries -----------------------------------------------------------------------------


def raw_kokoro(models: Path, variants: dict[str, Path], runs: int) -> dict[str, Any]:
    voices = str(models / "kokoro" / "voices.npz")
    out: dict[str, Any] = {}
    configs = [
        ("int8", "EXHAUSTIVE", 0),
        ("float", "EXHAUSTIVE", 4),
        ("float", "HEURISTIC", 4),
        ("float", "HEURISTIC", 1),
        ("fp16", "HEURISTIC", 4),
    ]
    for name, search, threads in configs:
        path = variants.get(name)
        if path is None or not path.is_file():
            out[f"{name}/{search}/{threads}"] = {"skipped": "no such variant"}
            continue
        try:
            out[f"{name}/{search}/{threads}"] = _kokoro_config(path, voices, search, threads, runs)
        except Exception as exc:  # e.g. an fp16 model that does not load: report, go on
            out[f"{name}/{search}/{threads}"] = {"failed": repr(exc)[:400]}
    return out


def _kokoro_config(path: Path, voices: str, search: str, threads: int, runs: int) -> dict[str, Any]:
    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    used0 = _nvml_used_mib()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    cuda = {"cudnn_conv_algo_search": search, "arena_extend_strategy": "kSameAsRequested"}
    providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
    kokoro = Kokoro.from_session(
        ort.InferenceSession(str(path), options, providers=providers), voices
    )
    new = []
    for text in NEW_LENGTHS:  # the first call of each length
        t0 = time.perf_counter()
        kokoro.create(text, voice=VOICE, lang="en-us")
        new.append(time.perf_counter() - t0)
    audio, rate = kokoro.create(TEXT, voice=VOICE, lang="en-us")
    full = _timed(lambda: kokoro.create(TEXT, voice=VOICE, lang="en-us"), runs)
    kokoro.create(SENTENCE, voice=VOICE, lang="en-us")
    sent = _timed(lambda: kokoro.create(SENTENCE, voice=VOICE, lang="en-us"), runs)
    used1 = _nvml_used_mib()
    return {
        "audio_s": len(audio) / rate,
        "full": summary(full),
        "sentence": summary(sent),
        "new_length": summary(new[1:]),  # the very first call also builds the session state
        "gpu_mib": None if used0 is None or used1 is None else round(used1 - used0),
        "audio": audio,
    }


def raw_whisper(
    models: Path, clip48: np.ndarray, long: np.ndarray, runs: int, quick: bool = False
) -> dict[str, Any]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    out: dict[str, Any] = {}
    for compute in ("int8_float16",) if quick else ("int8_float16", "float16"):
        used0 = _nvml_used_mib()
        model = WhisperModel(str(models / "whisper-base"), device="cuda", compute_type=compute)
        seq = _timed(lambda m=model: list(m.transcribe(clip48, language="en")[0]), runs + 1)[1:]
        res: dict[str, Any] = {"seq_48s": summary(seq)}
        pipe = BatchedInferencePipeline(model)
        for bs in (8, 16) if quick else (8, 16, 32):
            t = _timed(
                lambda p=pipe, b=bs: list(p.transcribe(long, language="en", batch_size=b)[0]), 2
            )
            res[f"batched_{bs}_600s"] = {"s": min(t), "rtf": len(long) / 16000 / min(t)}
        t = _timed(lambda p=pipe: list(p.transcribe(clip48, language="en", batch_size=16)[0]), 3)
        res["batched_16_48s"] = summary(t)
        used1 = _nvml_used_mib()
        res["gpu_mib"] = None if used0 is None or used1 is None else round(used1 - used0)
        out[compute] = res
        del pipe, model
    return out


# -- through the gateway -----------------------------------------------------------------------


@contextmanager
def _gateway(
    env: dict[str, str], name: str, quiet: bool = True, connections: int = 100
) -> Iterator[tuple[httpx.Client, str]]:
    """A gateway process for one measurement (5 minutes to load models on a cold GPU) and a
    client with room for a 10-minute transcription: (client, base URL). 100 connections and
    20 kept alive are httpx's own defaults."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=20)
    with (
        GatewayProcess(env, name=name, ready_timeout_s=300, quiet=quiet) as gw,
        httpx.Client(timeout=600, limits=limits) as c,
    ):
        yield c, gw.base_url


def gateway_figures(env: dict[str, str], clip48: bytes, long: bytes, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with _gateway(env, "gpu-bench") as (c, base):
        speech(c, base, TEXT, VOICE)
        out["new_length"] = summary([speech(c, base, t, VOICE) for t in reversed(NEW_LENGTHS)])
        out["speech_full"] = summary([speech(c, base, TEXT, VOICE) for _ in range(runs)])
        out["sentence"] = summary([speech(c, base, SENTENCE, VOICE) for _ in range(runs)])
        out["sentence_wav"] = summary(
            [speech(c, base, SENTENCE, VOICE, "wav") for _ in range(runs)]
        )
        transcribe(c, base, clip48, "clip.wav")
        out["whisper_48s"] = summary(
            [transcribe(c, base, clip48, "clip.wav")[0] for _ in range(runs)]
        )
        t, _text = transcribe(c, base, long, "long.wav", "batch")
        out["ten_min"] = {"s": t, "rtf": 600.0 / t}
        out["status"] = c.get(f"{base}/v1/scheduler").json()
    return out


def sharing(env: dict[str, str], clip48: bytes, window_s: float, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with _gateway(env, "gpu-share") as (c, base):
        speech(c, base, SENTENCE, VOICE)
        transcribe(c, base, clip48, "clip.wav", "batch")
        idle = [speech(c, base, SENTENCE, VOICE) for _ in range(runs)]
        solo = BatchLoop(base, [clip48], 48.0, loops=2).start()
        t0 = time.monotonic()
        time.sleep(window_s)
        t1 = time.monotonic()
        solo.stop(wait_s=60)
        busy_loop = BatchLoop(base, [clip48], 48.0, loops=2).start()
        time.sleep(1.0)
        b0 = time.monotonic()
        loaded: list[float] = []
        while time.monotonic() - b0 < window_s:
            loaded.append(speech(c, base, SENTENCE, VOICE))
            time.sleep(0.2)
        b1 = time.monotonic()
        busy_loop.stop(wait_s=60)
        idle_s, loaded_s = summary(idle), summary(loaded)
        out = {
            "idle": idle_s,
            "loaded": loaded_s,
            "p95_ratio": loaded_s["p95"] / idle_s["p95"],
            "batch_solo_rate": solo.throughput(t0, t1),
            "batch_loaded_rate": busy_loop.throughput(b0, b1),
            "batch_jobs_loaded": busy_loop.finished(b0, b1),
            "errors": solo.errors + busy_loop.errors,
            "status": c.get(f"{base}/v1/scheduler").json(),
        }
        out["batch_share"] = out["batch_loaded_rate"] / max(out["batch_solo_rate"], 1e-9)
    return out


def concurrency(env: dict[str, str], runs: int) -> dict[str, Any]:
    """N requests for the 8.7 s text at once, `runs` rounds each: audio seconds per wall second
    and the requests' p95, for N = 1, 4, 8."""
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, Any] = {}
    with _gateway(env, "gpu-concurrency", quiet=False, connections=16) as (c, base):
        speech(c, base, TEXT, VOICE)
        body = {"model": "tts-1", "input": TEXT, "voice": VOICE, "response_format": "pcm"}
        pcm = c.post(f"{base}/v1/audio/speech", json=body, headers=AUTH).content
        audio_s = len(pcm) / 2 / 24000  # s16 mono at 24 kHz
        for n in (1, 4, 8):
            latencies: list[float] = []
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                for _ in range(runs):
                    latencies += list(pool.map(lambda _: speech(c, base, TEXT, VOICE), range(n)))
            wall = time.perf_counter() - t0
            out[str(n)] = {
                "latency": summary(latencies),
                "audio_per_s": round(audio_s * n * runs / wall, 1),
            }
        out["status"] = c.get(f"{base}/v1/scheduler").json()
    return out


def _wer_of(audio: np.ndarray, rate: int, text: str, model: Any) -> float:
    from gateway.audio.decode import decode_audio

    from .accuracy import wer

    pcm = decode_audio(encode(audio, rate, "wav"))
    return wer(text, " ".join(s.text for s in model.transcribe(pcm, language="en")[0]))


def run(out_path: Path, quick: bool) -> dict[str, Any]:
    from gateway.config import Settings

    models = Settings().models.dir
    runs = 5 if quick else 15
    res: dict[str, Any] = {
        "gpu": _gpu_name(),
        "host": platform.node(),
        "quick": quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import ctranslate2
        import onnxruntime

        res["versions"] = {
            "onnxruntime": onnxruntime.__version__,
            "ctranslate2": ctranslate2.__version__,
        }
    except Exception as exc:
        res["versions"] = repr(exc)

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        clean = json.loads(json.dumps(res, default=lambda o: None))
        out_path.write_text(json.dumps(clean, indent=2))

    # Clips are spoken by the gateway itself (CPU-only server, so the GPU is idle meanwhile).
    cpu_only = {"GATEWAY_KOKORO__PLACEMENT": "cpu", "GATEWAY_WHISPER__PLACEMENT": "cpu"}
    with GatewayProcess(cpu_only, name="clips", quiet=True) as cpu:
        a48, rate = build_clip(cpu.base_url, 48.0)
        a600, _ = build_clip(cpu.base_url, 600.0, start=3)
    from gateway.audio.decode import decode_audio

    wav48 = encode(a48, rate, "wav")
    pcm48, pcm600 = decode_audio(wav48), decode_audio(encode(a600, rate, "wav"))
    wav600 = encode(pcm600, 16000, "wav")  # 19 MB: under the upload limit
    variants = {
        "int8": models / "kokoro" / "model.onnx",
        "float": models / "kokoro" / "model.gpu.onnx",
        "fp16": models / "kokoro" / "model.fp16.onnx",
    }
    window = 20 if quick else 40
    steps = {
        "raw_kokoro": lambda: raw_kokoro(models, variants, runs),
        "raw_whisper": lambda: raw_whisper(models, pcm48, pcm600, 3, quick),
        "gateway": lambda: gateway_figures({}, wav48, wav600, runs),
        "gateway_fp32": lambda: gateway_figures(
            {"GATEWAY_KOKORO__GPU_PRECISION": "fp32"}, wav48, wav600, runs
        ),
        "concurrency1": lambda: concurrency({"GATEWAY_KOKORO__GPU_CONCURRENCY": "1"}, 3),
        "concurrency4": lambda: concurrency({"GATEWAY_KOKORO__GPU_CONCURRENCY": "4"}, 3),
        "sharing_slots1": lambda: sharing(
            {"GATEWAY_SCHEDULER__GPU_SLOTS": "1"}, wav48, window, runs
        ),
        "sharing_slots2": lambda: sharing(
            {"GATEWAY_SCHEDULER__GPU_SLOTS": "2"}, wav48, window, runs
        ),
        "sharing_slots2_prio": lambda: sharing(
            {"GATEWAY_SCHEDULER__GPU_SLOTS": "2", "GATEWAY_KOKORO__GPU_STREAM_PRIORITY": "true"},
            wav48,
            window,
            runs,
        ),
    }
    only = [s for s in os.environ.get("GPU_BENCH_STEPS", "").split(",") if s]
    for name, fn in steps.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as exc:  # one step failing must not lose the others' figures
            import traceback

            res[name] = {"failed": repr(exc)[:500], "trace": traceback.format_exc()[-1500:]}
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
        save()
    spoken = [
        val
        for val in res.get("raw_kokoro", {}).values()
        if isinstance(val, dict) and isinstance(val.get("audio"), np.ndarray)
    ]
    if spoken:  # one Whisper for every variant's audio
        from faster_whisper import WhisperModel

        whisper = WhisperModel(
            str(models / "whisper-base"), device="cuda", compute_type="int8_float16"
        )
        for val in spoken:
            val["wer"] = _wer_of(val.pop("audio"), 24000, TEXT, whisper)
    save()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks gpu", description=__doc__.splitlines()[0]
    )
    p.add_argument("--out", type=Path, default=DOCS / "benchmarks-gpu.json")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--md", type=Path, help="also write the Markdown report here")
    p.add_argument("--render", action="store_true", help="only render --md from --out")
    args = p.parse_args(argv)
    threading.current_thread().name = "bench-gpu"
    res = json.loads(args.out.read_text()) if args.render else run(args.out, args.quick)
    if args.md:
        from .gpu_report import render

        args.md.write_text(render(res, args.out.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
