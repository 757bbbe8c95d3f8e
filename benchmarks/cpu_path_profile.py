"""Where the wall time of one transcription over HTTP goes, against the raw library call.

    python -m benchmarks.cpu_path_profile [--seconds 48] [--runs 3] [--language en|none]
                                       [--env GATEWAY_X=Y ...] [--detection SEGMENTS,THRESHOLD]

Starts an instrumented `gateway serve` and an instrumented raw worker (benchmarks.raw: the
raw call `WhisperModel.transcribe(path, beam_size=5, vad_filter=True)`), each in a process of
its own, and sends the report's clip (pool sentences, 0.6 s pauses, MP3; cached) to both,
interleaved. Both processes time the same library functions (decode, Silero VAD, features,
encoder passes, decoder calls and their tokens, language detection) and, in the gateway, the
request's steps (body, handler, decode, window planning, queueing, the unit on its worker
thread, formatting); every record is written per request, with each thread's CPU time and nice
value. Prints the critical path of each side (medians over the runs) and the pass counts.
`--detection 3,0.97` gives the raw call the gateway's detection settings.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from statistics import mean, median
from typing import Any

EVENTS: list[dict[str, Any]] = []


def _record(name: str, t0: float, t1: float, **extra: Any) -> None:
    EVENTS.append({"name": name, "t0": t0, "t1": t1, "tid": threading.get_native_id(), **extra})


def _cpu_now() -> float:
    return time.thread_time()


def _wrap(owner: Any, attr: str, name: str, extra: Callable[[Any], dict] | None = None) -> None:
    orig = getattr(owner, attr)
    if inspect.iscoroutinefunction(orig):

        async def awrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await orig(*a, **k)
            finally:
                _record(name, t0, time.perf_counter(), cpu=0.0)

        setattr(owner, attr, awrapper)
        return

    def wrapper(*a: Any, **k: Any) -> Any:
        c0, t0 = _cpu_now(), time.perf_counter()
        out = orig(*a, **k)
        more = extra(out) if extra else {}
        _record(name, t0, time.perf_counter(), cpu=_cpu_now() - c0, **more)
        return out

    setattr(owner, attr, wrapper)


def threads_cpu() -> dict[str, dict[str, Any]]:
    """Each thread's CPU seconds (user + sys), name and nice value, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        try:  # ns on a CPU, ns runnable but waiting for one
            run_ns, wait_ns, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
        except (OSError, ValueError):
            run_ns = wait_ns = "0"
        out[tid] = {
            "comm": comm,
            "cpu": (int(fields[11]) + int(fields[12])) / tick,
            "nice": int(fields[16]),
            "run": int(run_ns) / 1e9,
            "wait": int(wait_ns) / 1e9,
        }
    return out


def cpu_delta(before: dict, after: dict) -> list[dict[str, Any]]:
    rows = []
    for tid, a in after.items():
        b = before.get(tid, {"cpu": 0.0, "run": 0.0, "wait": 0.0})
        used = a["cpu"] - b["cpu"]
        run, wait = a["run"] - b["run"], a["wait"] - b["wait"]
        if run > 0.001:
            rows.append({"tid": int(tid), "comm": a["comm"], "nice": a["nice"], "cpu": used,
                         "run": run, "wait": wait})  # fmt: skip
    return sorted(rows, key=lambda r: -r["cpu"])


def _library_hooks() -> None:
    import faster_whisper.transcribe as fwt
    from faster_whisper.feature_extractor import FeatureExtractor

    def tokens(out: Any) -> dict:
        return {"tokens": len(out[0].sequences_ids[0]), "temperature": out[2]}

    _wrap(fwt.WhisperModel, "encode", "encoder pass")
    _wrap(fwt.WhisperModel, "generate_with_fallback", "decoder (generate)", tokens)
    _wrap(fwt.WhisperModel, "detect_language", "language detection")
    _wrap(FeatureExtractor, "__call__", "features")
    _wrap(fwt, "get_speech_timestamps", "Silero VAD")
    _wrap(fwt, "decode_audio", "decode")


def serve(port: int, trace: Path) -> None:
    """`gateway serve` with the hooks; one JSON line per transcription request into `trace`."""
    _library_hooks()
    import gateway.api.transcriptions as api
    import gateway.app
    import gateway.engines.whisper as ew
    import gateway.tasks.transcription as tt
    from gateway import cli
    from gateway.scheduler.pool import Instance
    from gateway.scheduler.queue import Job

    _wrap(ew, "get_speech_timestamps", "Silero VAD")
    _wrap(ew, "detect", "detect (gateway)")
    _wrap(ew, "release_free_memory", "malloc_trim")
    _wrap(ew.WhisperEngine, "run", "engine run")
    _wrap(tt, "_decode", "decode")
    _wrap(tt, "plan_windows", "plan windows")
    _wrap(api, "_transcribe", "handler")
    _wrap(api, "_format", "format")
    _wrap(api, "_read_upload", "read upload")
    _wrap(tt, "check", "check")
    _wrap(tt, "_cut", "cut (windows)")
    _wrap(tt.TranscriptionJob, "transcript", "transcript (all units)")
    _wrap(Job, "run", "job.run (loop)")
    _wrap(Instance, "_call", "unit on worker")
    create = gateway.app.create_app

    def create_app(*a: Any, **k: Any) -> Any:
        app = create(*a, **k)

        async def traced(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/transcriptions"):
                return await app(scope, receive, send)
            EVENTS.clear()
            cpu0, t0 = threads_cpu(), time.perf_counter()

            async def rx() -> Any:
                msg = await receive()
                if msg.get("type") == "http.request" and not msg.get("more_body"):
                    _record("body received", t0, time.perf_counter())
                return msg

            try:
                await app(scope, rx, send)
            finally:
                t1 = time.perf_counter()
                _record("request (server)", t0, t1)
                rec = {"events": list(EVENTS), "threads": cpu_delta(cpu0, threads_cpu())}
                with trace.open("a") as f:
                    f.write(json.dumps(rec) + "\n")

        class Traced:  # the app, as uvicorn and `serve` see it
            state = app.state
            __call__ = staticmethod(traced)

        return Traced()

    gateway.app.create_app = create_app
    cli.main(["serve", "--host", "127.0.0.1", "--port", str(port)])


def raw(argv: list[str]) -> None:
    """benchmarks.raw's worker with the hooks; each reply carries its events."""
    _library_hooks()
    from benchmarks import raw as worker

    handle = worker._handle

    def traced(cmd: dict[str, Any], kokoro: Any, whisper: Any) -> dict[str, Any]:
        EVENTS.clear()
        cpu0 = threads_cpu()
        if cmd.get("op") == "transcribe" and cmd.get("segments"):
            t0 = time.perf_counter()
            segments, _ = whisper.transcribe(
                cmd["path"], beam_size=5, vad_filter=True, language=cmd.get("language"),
                language_detection_segments=cmd["segments"],
                language_detection_threshold=cmd["threshold"],
            )  # fmt: skip
            text = " ".join(s.text.strip() for s in segments)
            reply = {"s": time.perf_counter() - t0, "text": text}
        else:
            reply = handle(cmd, kokoro, whisper)
        reply["events"] = list(EVENTS)
        reply["threads"] = cpu_delta(cpu0, threads_cpu())
        return reply

    worker._handle = traced
    worker.serve(argv)


# -- the driver --------------------------------------------------------------------------------

ORDER = ("decode", "Silero VAD", "language detection", "features", "encoder pass",
         "decoder (generate)", "malloc_trim")  # fmt: skip


LIBRARY = ("decode", "Silero VAD", "language detection", "features", "encoder pass",
           "decoder (generate)", "malloc_trim")  # fmt: skip


def _dur(e: dict) -> float:
    return float(e["t1"] - e["t0"])


def _inside(ev: list[dict], outer: dict, names: tuple[str, ...]) -> list[dict]:
    return [
        e for e in ev if e["name"] in names and outer["t0"] <= e["t0"] and e["t1"] <= outer["t1"]
    ]


def library_steps(ev: list[dict], within: list[dict] | None = None) -> dict[str, float]:
    """Seconds per library step (inside the `within` spans, if given); detection counts without
    the features and encoder pass it runs, which count as such, so the steps add up."""
    spans = within if within is not None else [{"t0": -1e18, "t1": 1e18}]
    out = dict.fromkeys(LIBRARY, 0.0)
    for outer in spans:
        for e in _inside(ev, outer, LIBRARY):
            out[e["name"]] += _dur(e)
            if e["name"] == "language detection":
                out[e["name"]] -= sum(map(_dur, _inside(ev, e, ("features", "encoder pass"))))
    return out


def library_cpu(ev: list[dict]) -> dict[str, float]:
    """CPU seconds of the calling thread per single-threaded library step (decode, VAD,
    features): what load does not change."""
    out: dict[str, float] = {}
    for name in ("decode", "Silero VAD", "features"):
        out[name] = sum(e.get("cpu", 0.0) for e in ev if e["name"] == name)
    return out


def counts(ev: list[dict]) -> dict[str, Any]:
    gens = [e for e in ev if e["name"] == "decoder (generate)"]
    return {
        "encoder passes": sum(e["name"] == "encoder pass" for e in ev),
        "decoder calls": len(gens),
        "tokens": sum(e["tokens"] for e in gens),
        "fallbacks": sum(e["temperature"] > 0 for e in gens),
        "VAD passes": sum(e["name"] == "Silero VAD" for e in ev),
        "detections": sum(e["name"] == "language detection" for e in ev),
    }


def gateway_path(rec: dict, wall: float) -> dict[str, float]:
    """The request's critical path, step by step; lines in [brackets] are the time between
    the hooks (derived), the others are measured."""
    ev = rec["events"]

    def span(name: str) -> float:
        return sum(_dur(e) for e in ev if e["name"] == name)

    def one(name: str) -> dict:
        return next(e for e in ev if e["name"] == name)

    req, handler, cut = one("request (server)"), one("handler"), one("cut (windows)")
    engines = [e for e in ev if e["name"] == "engine run"]
    units = span("unit on worker")
    runs = span("job.run (loop)")
    in_engine = library_steps(ev, engines)
    vad_plan = sum(map(_dur, _inside(ev, cut, ("Silero VAD",))))
    out = {
        "[client, connection, request line]": wall - _dur(req),
        "[upload body and form parsing]": handler["t0"] - req["t0"],
        "check, read upload": span("check") + span("read upload"),
        "decode (PyAV, to 16 kHz)": span("decode"),
        "plan: Silero VAD over the clip": vad_plan,
        "plan: windows and units": _dur(cut) - vad_plan,
        "[queueing, dispatch, thread hops]": runs - units,
        "[unit on its worker, outside the engine]": units - span("engine run"),
    }
    for k, v in in_engine.items():
        if k != "decode":
            out[f"engine: {k}"] = v
    out["[engine: Python around the library]"] = span("engine run") - sum(in_engine.values())
    out["[transcript: between units]"] = span("transcript (all units)") - runs
    out["format the response"] = span("format")
    measured = (
        span("check") + span("read upload") + span("decode") + _dur(cut)
        + span("transcript (all units)") + span("format")
    )  # fmt: skip
    out["[handler, the rest]"] = _dur(handler) - measured
    out["[send the response]"] = req["t1"] - handler["t1"]
    return out


def raw_path(reply: dict) -> dict[str, float]:
    out = library_steps(reply["events"])
    out.pop("malloc_trim")
    out["[Python around the library]"] = reply["s"] - sum(out.values())
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_path_profile")
    p.add_argument("--seconds", type=float, default=48.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--language", default="en")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--detection", default="")
    p.add_argument("--priority", default="", help="X-Priority of the gateway's requests")
    p.add_argument("--serve", nargs=2)
    p.add_argument("--raw", nargs="*")
    return p


def main() -> int:
    args = _parser().parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return 0
    if args.raw is not None:
        raw(args.raw)
        return 0
    import httpx

    from benchmarks import child_env, clips
    from benchmarks.client import AUTH
    from benchmarks.measure import RawWorker
    from benchmarks.server import GatewayProcess, free_port, load_average, proc_cpu_seconds
    from gateway.config import Settings

    language = None if args.language == "none" else args.language
    settings = Settings()
    print(f"load average before: {load_average()}", flush=True)
    with GatewayProcess({}, "clips") as gw0:  # the clip, built as the report builds it
        path = clips.clip_file(gw0.base_url, args.seconds, "mp3")
    data = path.read_bytes()
    trace = Path(f"/tmp/cpu-path-trace-{os.getpid()}.jsonl")
    port = free_port()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    env.setdefault("GATEWAY_SERVER__LOG_LEVEL", "WARNING")
    env.setdefault("GATEWAY_WYOMING__ENABLED", "false")
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cpu_path_profile", "--serve", str(port), str(trace)],
        env=child_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    from gateway.registry.manifest import load_manifest
    from gateway.registry.store import ModelStore

    store = ModelStore(
        settings.models.dir, load_manifest(settings.models.manifest), settings.models.local_paths
    )
    threads = min(settings.cpu_threads("kokoro"), settings.cpu_threads("whisper"))
    rawp = RawWorker.__new__(RawWorker)  # benchmarks.raw's worker, instrumented
    rawp.proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cpu_path_profile", "--raw",
         str(store.folder(settings.models.speech_default)),
         str(store.folder(settings.models.transcription_default)), str(threads),
         settings.whisper.compute_type, "sleeping"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=child_env(),
    )  # fmt: skip
    assert rawp._read().get("ready")
    for _ in range(600):
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raw_cmd: dict[str, Any] = {"op": "transcribe", "path": str(path), "language": language}
    if args.detection:
        segs, thr = args.detection.split(",")
        raw_cmd.update(segments=int(segs), threshold=float(thr))
    form = {"model": "whisper-1", "response_format": "verbose_json"}
    if language:
        form["language"] = language
    headers = {**AUTH, **({"X-Priority": args.priority} if args.priority else {})}
    rows: list[tuple[dict, dict, float, float, dict, float]] = []
    with httpx.Client(timeout=900) as client:
        for i in range(args.runs + 1):  # the first round warms both sides
            r = rawp.call(**raw_cmd)
            c0, t0 = proc_cpu_seconds(server.pid), time.perf_counter()
            resp = client.post(
                base + "/v1/audio/transcriptions", files={"file": (path.name, data)},
                data=form, headers=headers,
            )  # fmt: skip
            wall, cpu = time.perf_counter() - t0, proc_cpu_seconds(server.pid) - c0
            resp.raise_for_status()
            time.sleep(0.3)  # the record is written as the response ends
            rec = json.loads(trace.read_text().splitlines()[-1])
            if i:
                rows.append((r, rec, wall, cpu, resp.json(), r["s"]))
            print(f"run {i}: raw {r['s']:.2f} s, gateway {wall:.2f} s, load {load_average()}",
                  flush=True)  # fmt: skip
    rawp.close()
    server.terminate()
    server.wait(30)
    _print(rows)
    print(f"load average after: {load_average()}")
    return 0


def _print(rows: list) -> None:
    gw = [gateway_path(rec, wall) for _, rec, wall, _, _, _ in rows]
    rw = [raw_path(r) for r, *_ in rows]
    # means, so that the steps add up to the wall time ([...]: time between the hooks)
    print("\ngateway critical path, mean seconds per step ([...]: between the hooks):")
    for k in gw[0]:
        print(f"  {k:45s} {mean(g[k] for g in gw):7.3f}")
    walls = [w for _, _, w, _, _, _ in rows]
    print(f"  {'= wall (client)':45s} {mean(walls):7.3f}   runs: {[round(w, 2) for w in walls]}")
    derived = [sum(v for k, v in g.items() if k.startswith("[")) for g in gw]
    print(f"  {'of which between the hooks':45s} {mean(derived):7.3f}")
    print("raw call, mean seconds per step:")
    for k in rw[0]:
        print(f"  {k:45s} {mean(x[k] for x in rw):7.3f}")
    raws = [r["s"] for r, *_ in rows]
    print(f"  {'= wall (raw call)':45s} {mean(raws):7.3f}   runs: {[round(w, 2) for w in raws]}")
    print("thread CPU of single-threaded steps (median): raw",
          {k: round(median(library_cpu(r["events"])[k] for r, *_ in rows), 3)
           for k in ("decode", "Silero VAD", "features")},
          "gateway",
          {k: round(median(library_cpu(rec["events"])[k] for _, rec, *_ in rows), 3)
           for k in ("decode", "Silero VAD", "features")})  # fmt: skip
    for name, i in (("raw", 0), ("gateway", 1)):
        print(f"counts, {name}:", [counts(row[i]["events"]) for row in rows])
    for name, i in (("raw", 0), ("gateway", 1)):
        th = [row[i]["threads"] for row in rows]
        cpu = median(sum(t["cpu"] for t in x) for x in th)
        run = median(sum(t["run"] for t in x) for x in th)
        wait = median(sum(t["wait"] for t in x) for x in th)
        print(
            f"{name}: CPU {cpu:.2f} s (schedstat run {run:.2f} s), runnable but waiting "
            f"{wait:.2f} s, over all threads; last run's threads:"
        )
        for t in th[-1][:6]:
            print(
                f"    tid {t['tid']} nice {t['nice']}: run {t['run']:.2f} s, wait {t['wait']:.2f} s"
            )
    print("raw text:", rows[-1][0].get("text", "")[:200])
    print("gateway text:", rows[-1][4].get("text", "")[:200])


if __name__ == "__main__":
    raise SystemExit(main())
