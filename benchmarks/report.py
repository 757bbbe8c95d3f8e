"""`python -m benchmarks report`: measure everything in one run and write docs/benchmarks.md + plots.

Sections: (1) overhead against the raw libraries, (2) sharing (the `sharing` benchmark),
(3) throughput against concurrency, (4) memory, (5) streaming, (6) accuracy of long
transcriptions, (7) Wyoming, (8) spoken-language detection, (9) realtime transcription over
the WebSocket, (10) the cost of word timings. `--quick` uses tiny inputs and few runs and writes to `--out` or a temporary
folder, never to docs/.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.config import Settings

from . import (
    DOCS,
    ROOT,
    accuracy,
    goals,
    languages,
    live,
    live_figures,
    measure,
    realtime,
    sharing,
    timings,
    wyoming,
)
from .client import speech, transcribe
from .server import GatewayProcess, load_average, machine_info

NAN = float("nan")


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_report(
    quick: bool, settings: Settings, logs: Path, command: str, say: Any = _say
) -> dict[str, Any]:
    started = time.time()
    res: dict[str, Any] = {
        "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": command,
        "machine": machine_info(),
        "load_before": load_average(),
    }
    with GatewayProcess({}, "report", logs, quiet=True) as gw:
        base = gw.base_url
        inputs = measure.prepare(base, quick, say)
        with httpx.Client(timeout=600) as client:  # load both models, then read memory idle
            speech(client, base, inputs["sentences"][0][0])
            transcribe(client, base, Path(inputs["tp_clip"]).read_bytes(), "warm.mp3")
        time.sleep(0.5)
        res["memory_idle"] = gw.memory()
        res["overhead"] = measure.overhead(base, gw.pid, settings, inputs, 1 if quick else 5, say)
        res["memory_sections"] = {"overhead": gw.memory()}
        levels = (1, 2) if quick else (1, 2, 4, 8)
        res["throughput"] = measure.throughput(
            base,
            levels,
            (lambda c: 1) if quick else (lambda c: {1: 3, 2: 2}.get(c, 1)),
            inputs,
            say,
        )
        res["throughput"]["clip_s"] = inputs["tp_clip_s"]
        res["memory_sections"]["throughput"] = gw.memory()
        res["streaming"] = measure.streaming(base, inputs["stream_text"], 1 if quick else 3, say)
        res["memory_after"] = res["memory_sections"]["streaming"] = gw.memory()
        res["gateway_env"] = {
            "policy": settings.scheduler.policy,
            "cores": settings.scheduler.cores,
            "cpu_slots": settings.scheduler.cpu_slots,
        }
    # accuracy in a gateway of its own: the hour-long upload's decoded audio (0.2 GiB, 0.5 at
    # its decoding peak) would otherwise be in the memory figures of the workload above
    with GatewayProcess({}, "accuracy", logs, quiet=True) as gw:
        raw = measure.RawWorker(settings)
        try:
            res["accuracy"] = accuracy.run(gw.base_url, raw, logs, quick, say)
        finally:
            raw.close()
    res["wyoming"] = wyoming.run(quick, logs, say)  # a gateway of its own, before sharing's
    res["languages"] = languages.run(say, logs, quick)  # gateways of their own, one per setting
    res["realtime"] = realtime.run(quick, logs, say)  # a gateway of its own
    res["live"] = live.run(quick, 100, logs, say)  # a gateway of its own
    res["timings"] = timings.run(quick, say)  # in this process; no other gateway is running
    res["sharing"] = sharing.run_sharing(quick, logs, say)
    res["load_after"] = load_average()
    res["elapsed_s"] = time.time() - started
    return res


# -- rendering ---------------------------------------------------------------------------------


def _f(x: float, fmt: str = ".2f") -> str:
    return "–" if x != x else format(x, fmt)


def _gib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB"


def memory_rows(res: dict[str, Any]) -> list[tuple[str, float]]:
    rows = [
        ("gateway, both models loaded, idle (VmRSS)", res["memory_idle"].get("VmRSS", 0.0)),
        ("gateway, peak after the run (VmHWM)", res["memory_after"].get("VmHWM", 0.0)),
        ("raw libraries, one process (VmHWM)", res["overhead"]["raw_memory"].get("VmHWM", 0.0)),
    ]
    two = res["sharing"]["configs"].get("two-servers")
    if two:
        rows.append(("two gateways (speech + transcription), peak sum", two["peak_rss_mib"]))
    pri = res["sharing"]["configs"].get("priority")
    if pri:
        rows.append(("gateway, priority policy, peak after sharing", pri["peak_rss_mib"]))
    return rows


def render(res: dict[str, Any], img: str = "img") -> str:
    m = res["machine"]
    sh = res["sharing"]
    cfg = sh["configs"]
    lb, la = res["load_before"], res["load_after"]
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{res['command']}` on {res['date']} in {res['elapsed_s'] / 60:.1f} min"
        + (" (**quick mode: tiny inputs, few runs; not representative**)" if res["quick"] else "")
        + ". Re-run it to refresh this page; every number below comes from that one run.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['nproc']} cores (nproc), no GPU used |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| OS / Python | Linux {m['kernel']}, Python {m['python']} |",
        f"| load average (1/5/15 min) before | {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f} |",
        f"| load average after | {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} |",
        f"| gateway | policy `{res['gateway_env']['policy']}`, {res['gateway_env']['cores']} cores "
        f"planned, Kokoro int8 (ONNX Runtime) + Whisper base int8 (CTranslate2), "
        f"{res['overhead']['threads']['kokoro']} threads each |",
        "",
        "The machine may be shared: a load average above the core count before or after the run "
        "means other processes competed for the cores, and every figure is then noisier.",
        "",
    ]
    out += goals.render(res)
    out += _overhead(res, img) + _sharing(sh, cfg, img) + _throughput(res, img)
    out += _memory(res, img) + _streaming(res, img) + goals.render_accuracy(res)
    out += wyoming.render(res.get("wyoming"))
    out += languages.render(res)
    out += realtime.render(res.get("realtime"))
    if res.get("live"):
        out += ["", *live_figures.render(res["live"])]
    out += timings.render(res.get("timings"))
    return "\n".join(out) + "\n"


def _overhead(res: dict[str, Any], img: str) -> list[str]:
    rows = [
        "## 1. Overhead: gateway over HTTP against the raw library call",
        "",
        "Same model files, same thread count, same input; raw and gateway runs interleaved "
        "(so background load hits both alike); medians. The raw side is `kokoro_onnx` "
        "`Kokoro.create` on an ONNX Runtime session with the gateway's CPU-lane session "
        "options (the same thread count, idle threads sleep), and `faster_whisper.WhisperModel("
        "compute_type=int8).transcribe(path, beam_size=5, vad_filter=True)`, in a process of "
        "its own (with `language=en` where the request names it). The gateway side is a full "
        "HTTP request (upload, decode, schedule, encode). Wall: end-to-end seconds; CPU: CPU seconds the process spent on the call "
        "(all threads; the gateway's whole process), which other processes on a shared "
        "machine disturb much less than wall time. Target: ≤ 1.05×.",
        "",
        "| case | audio | raw wall | gateway wall | wall ratio | raw CPU | gateway CPU "
        "| CPU ratio | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["overhead"]["cases"]:
        rows.append(
            f"| {c['case']} | {c['audio_s']:.1f} s | {c['raw_median']:.2f} s "
            f"| {c['gateway_median']:.2f} s | **{c['ratio']:.2f}×** "
            f"| {_f(c.get('raw_cpu_median', NAN))} s "
            f"| {_f(c.get('gateway_cpu_median', NAN))} s "
            f"| **{_f(c.get('cpu_ratio', NAN))}×** | {len(c['raw'])} |"
        )
    spun = [c for c in res["overhead"]["cases"] if "raw_spinning_median" in c]
    if spun:
        rows += [
            "",
            "The same speech runs against `kokoro_onnx` on ONNX Runtime's default session "
            "options (idle threads spin between nodes, as a plain `kokoro_onnx` user gets), "
            "interleaved with the runs above; spinning spends CPU time waiting, so its CPU "
            "figure is not work done:",
            "",
            "| case | raw wall, spinning | gateway wall | wall ratio | raw CPU, spinning "
            "| CPU ratio |",
            "|---|---|---|---|---|---|",
        ]
        rows += [
            f"| {c['case']} | {c['raw_spinning_median']:.2f} s | {c['gateway_median']:.2f} s "
            f"| **{c['ratio_spinning']:.2f}×** | {c['raw_spinning_cpu_median']:.2f} s "
            f"| {_f(c['cpu_ratio_spinning'])}× |"
            for c in spun
        ]
    rows += goals.render_detection(res)
    mp3 = res["overhead"].get("mp3_encoding")
    if mp3:
        rows += [
            "",
            f"MP3 encoding of the speech case's {mp3['audio_s']:.1f} s of audio at LAME quality "
            f"{mp3['quality']}, in one process, interleaved ({len(mp3['lame'])} runs, medians): "
            f"PyAV's libmp3lame {mp3['pyav_median'] * 1000:.0f} ms, LAME through `lameenc` (the "
            f"gateway's path) {mp3['lame_median'] * 1000:.0f} ms: **{mp3['speedup']:.1f}× "
            "faster**.",
        ]
    return rows + ["", f"![overhead]({img}/overhead.png)", ""]


def _sharing(sh: dict[str, Any], cfg: dict[str, Any], img: str) -> list[str]:
    p = sh["params"]
    probe = sh.get("probe", {})
    v = sh.get("verdict", {})
    rows = [
        "## 2. Sharing: an interactive sentence while batch transcriptions saturate the CPU",
        "",
        f"`python -m benchmarks sharing`: the sentence “{probe.get('text', '')}” "
        f"({probe.get('audio_s', 0):.1f} s of audio, default MP3) asked for {p['idle_runs']} "
        f"times idle, then {p['load_runs']} times while {p['loops']} clients loop "
        f"{p['clip_s']:g} s MP3 clips with `X-Priority: batch` ({p['gap_s']:g} s between "
        "sentences). Each layout runs in fresh processes, one after another:",
        "",
    ]
    rows += [f"- `{n}`: {c['label']}" for n, c in cfg.items()]
    rows += [
        "",
        sharing.format_table(sh),
        "",
        "Batch rate: seconds of audio transcribed per wall second, first with the batch loops "
        "alone, then while the sentence is asked for. CPU busy: all cores, from /proc/stat, "
        "while the sentence was asked for under load (whole machine).",
        "",
    ]
    if "priority" in cfg:
        pri = cfg["priority"]
        met = "met" if v.get("priority_ratio_within_target") else "not met"
        rows += [
            f"- priority p95 under load / idle p95 = **{pri['ratio_p95']:.2f}×** (target "
            f"≤ {sharing.TARGET_RATIO}×): {met}.",
            f"- better than fifo and two servers: "
            f"{'yes' if v.get('priority_better_than_others') else 'no'}.",
            "- work-conserving (batch jobs finish and the cores stay ≥ 90 % busy while "
            f"batch work waits): {'yes' if v.get('work_conserving') else 'no'} — "
            f"{pri['batch_jobs_finished']} batch jobs finished, cores {pri['cpu_busy']:.0%} "
            f"busy ({pri['gateway_cpu']:.0%} by the gateway, "
            f"{pri['others_cpu_load']:.0%} by other processes), "
            f"batch rate with speech {_f(pri['batch_rate_ratio'], '.0%')} of its rate "
            "alone.",
            "",
        ]
    return rows + [f"![sharing]({img}/sharing.png)", ""]


def _throughput(res: dict[str, Any], img: str) -> list[str]:
    rows = [
        "## 3. Throughput against concurrency",
        "",
        "N clients start together; each sends its requests one after another (3 each at 1 "
        "client, 2 at 2, 1 at 4 and 8; quick mode: 1). "
        "Speech: one pool sentence per request (default MP3); transcription: a "
        f"{res['throughput'].get('clip_s', 10):g} s MP3 clip. RTF = wall seconds per second "
        "of audio produced or transcribed, all clients together (lower is better).",
        "",
        "| engine | clients | requests | req/s | RTF | p50 latency | p95 latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine in ("speech", "transcription"):
        for r in res["throughput"][engine]:
            rows.append(
                f"| {engine} | {r['clients']} | {r['requests']} | {r['rps']:.2f} "
                f"| {_f(r['rtf'])} | {_f(r['latency']['p50'])} s "
                f"| {_f(r['latency']['p95'])} s |"
            )
    return rows + [
        "",
        "On the CPU, each engine runs one unit at a time on all its threads, so more "
        "clients queue rather than go faster: requests/s stays flat and latency grows with the "
        "queue.",
        "",
        f"![throughput]({img}/throughput.png)",
        "",
    ]


def _memory(res: dict[str, Any], img: str) -> list[str]:
    rows = [
        "## 4. Memory",
        "",
        "From /proc/<pid>/status (VmRSS: now; VmHWM: peak). Target: "
        "≤ 1.0 GiB with both models loaded.",
        "",
        "| process | memory |",
        "|---|---|",
    ]
    rows += [f"| {label} | {_gib(mib)} |" for label, mib in memory_rows(res)]
    sections = res.get("memory_sections")
    if sections:
        rows += [
            "",
            "The report's gateway after each section (both models loaded throughout):",
            "",
            "| after | VmRSS | VmHWM |",
            "|---|---|---|",
            f"| warm-up | {_gib(res['memory_idle'].get('VmRSS', 0))} "
            f"| {_gib(res['memory_idle'].get('VmHWM', 0))} |",
        ]
        rows += [
            f"| {name} | {_gib(m.get('VmRSS', 0))} | {_gib(m.get('VmHWM', 0))} |"
            for name, m in sections.items()
        ]
    return rows + ["", f"![memory]({img}/memory.png)", ""]


def _streaming(res: dict[str, Any], img: str) -> list[str]:
    s = res["streaming"]
    return [
        "## 5. Streaming",
        "",
        f'A {s["text_chars"]}-character multi-sentence reply, `"stream": true` (MP3) vs the '
        "same request without streaming; medians.",
        "",
        "| | seconds |",
        "|---|---|",
        f"| first audio byte, streamed | {_f(s['ttfb']['p50'])} |",
        f"| last byte, streamed | {_f(s['stream_total']['p50'])} |",
        f"| whole response, not streamed | {_f(s['full']['p50'])} |",
        "",
        f"![streaming]({img}/streaming.png)",
        "",
    ]


def write(res: dict[str, Any], out: Path) -> Path:
    img = out / "img"
    from . import plots  # matplotlib: the `bench` extra

    plots.sharing(res["sharing"], img / "sharing.png")
    plots.overhead(res["overhead"], img / "overhead.png")
    plots.throughput(res["throughput"], img / "throughput.png")
    plots.memory(memory_rows(res), img / "memory.png")
    plots.streaming(res["streaming"], img / "streaming.png")
    md = out / "benchmarks.md"
    md.write_text(render(res))
    return md


def main(args: Any, settings: Settings) -> int:
    if args.out is not None:
        out = Path(args.out)
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    else:
        out = DOCS
    if args.quick and out.resolve() == DOCS.resolve():
        raise SystemExit("--quick never writes to docs/; give another --out")
    out.mkdir(parents=True, exist_ok=True)
    # raw numbers and server logs never go to docs/
    raw_dir = ROOT / "results" if out.resolve() == DOCS.resolve() else out
    raw_dir.mkdir(parents=True, exist_ok=True)
    command = (
        "python -m benchmarks report"
        + (" --quick" if args.quick else "")
        + (f" --out {shlex.quote(str(args.out))}" if args.out is not None else "")
    )
    res = run_report(args.quick, settings, raw_dir / "logs", command)
    raw = raw_dir / f"bench-report-{time.strftime('%Y%m%d-%H%M%S')}.json"
    text = json.dumps(res, indent=2, default=str)
    raw.write_text(text)
    md = write(res, out)
    # the raw results beside the page, so every number on it can be re-derived
    (out / "benchmarks.json").write_text(text + "\n")
    print(f"wrote {md}, {out / 'benchmarks.json'}, {out / 'img'}/*.png and {raw}")
    return 0
