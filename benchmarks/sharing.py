"""`python -m benchmarks sharing`: interactive speech latency while batch transcriptions saturate the CPU.

Three layouts, each in fresh processes started one after another on the same machine:

- `priority`: one gateway, policy priority (Whisper on threads niced to 19 in the background CPU
  slot, Kokoro in the foreground slot at normal priority);
- `fifo`: one gateway, one queue in arrival order, no nice;
- `two-servers`: the layout users pick today, one gateway used only for speech and one only for
  transcription, both policy fifo and nice 0, contending for the same cores.

For each: the probe sentence's latency idle (p50/p95), then two clients loop long transcriptions
with `X-Priority: batch`, first alone (transcription throughput alone), then while the probe
sentence is asked for again and again (latency under load, throughput with speech, how busy the
cores were from /proc/stat). Work-conserving means the batch work takes the time speech leaves.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from . import clips
from .client import BatchLoop, speech, summary, transcribe
from .server import CpuMeter, GatewayProcess, proc_memory

TARGET_RATIO = 1.10  # issue #12 (was 1.25)
TARGET_BATCH_SHARE = 0.75  # batch rate while speech runs / its rate alone


@dataclass(frozen=True)
class Params:
    idle_runs: int
    load_runs: int
    clip_s: float  # length of each looping batch clip
    loops: int  # concurrent batch clients
    gap_s: float  # think time between two probe sentences
    batch_only_s: float  # batch alone, before the probe starts again
    settle_s: float  # after the loops start, before measuring
    drain_s: float  # how long to wait for running batch jobs at the end
    warm_runs: int = 2  # probe sentences before measuring (the first loads Kokoro)


FULL = Params(
    idle_runs=8,
    load_runs=10,
    clip_s=48,
    loops=2,
    gap_s=0.75,
    batch_only_s=12,
    settle_s=3,
    drain_s=20,
)
QUICK = Params(
    idle_runs=2,
    load_runs=2,
    clip_s=8,
    loops=2,
    gap_s=0.2,
    batch_only_s=2,
    settle_s=1,
    drain_s=5,
    warm_runs=1,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "priority": {
        "label": "one gateway, policy priority (Whisper niced 19)",
        "env": {"GATEWAY_SCHEDULER__POLICY": "priority"},
    },
    "fifo": {
        "label": "one gateway, policy fifo (one queue, no nice)",
        "env": {"GATEWAY_SCHEDULER__POLICY": "fifo", "GATEWAY_WHISPER__CPU_NICE": "0"},
    },
    "two-servers": {
        "label": "two gateways: speech-only + transcription-only, fifo, nice 0",
        "env": {"GATEWAY_SCHEDULER__POLICY": "fifo", "GATEWAY_WHISPER__CPU_NICE": "0"},
        "split": True,
    },
}

Say = Callable[[str], None]


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Inputs:
    """The probe sentence and the batch clips (MP3, as Open WebUI sends them)."""

    probe: str
    probe_audio_s: float
    batch_clips: list[bytes]
    batch_audio_s: float
    warm_clip: bytes


def prepare_inputs(base: str, params: Params, say: Say = _say) -> Inputs:
    t0 = time.perf_counter()
    audio, rate = clips.speak(base, clips.PROBE_SENTENCE)
    batch = []
    for start in range(params.loops):
        clip, rate = clips.build_clip(base, params.clip_s, start * 6)
        batch.append(clips.encode(clip, rate, "mp3"))
    warm, wrate = clips.speak(base, clips.POOL[0])
    say(f"inputs ready in {time.perf_counter() - t0:.1f} s (cache: {clips.cache_dir()})")
    return Inputs(
        clips.PROBE_SENTENCE,
        len(audio) / rate,
        batch,
        params.clip_s,
        clips.encode(warm, wrate, "mp3"),
    )


def _servers(name: str, log_dir: Path | None) -> list[GatewayProcess]:
    cfg = CONFIGS[name]
    if cfg.get("split"):
        return [
            GatewayProcess(cfg["env"], f"{name}-speech", log_dir, quiet=True),
            GatewayProcess(cfg["env"], f"{name}-transcription", log_dir, quiet=True),
        ]
    return [GatewayProcess(cfg["env"], name, log_dir, quiet=True)]


def _probe(client: httpx.Client, base: str, text: str, runs: int, gap_s: float) -> list[float]:
    out = []
    for _ in range(runs):
        out.append(speech(client, base, text))
        time.sleep(gap_s)
    return out


def run_config(
    name: str,
    params: Params,
    inputs: Inputs | None = None,
    log_dir: Path | None = None,
    say: Say = _say,
) -> tuple[dict[str, Any], Inputs]:
    servers = _servers(name, log_dir)
    loop: BatchLoop | None = None
    try:
        for s in servers:
            s.start()
        speech_base, batch_base = servers[0].base_url, servers[-1].base_url
        if inputs is None:
            inputs = prepare_inputs(speech_base, params, say)
        timeout = httpx.Timeout(600.0, connect=10.0)
        with httpx.Client(timeout=timeout) as client:
            for _ in range(params.warm_runs):
                speech(client, speech_base, inputs.probe)  # loads Kokoro, warms its session
            transcribe(client, batch_base, inputs.warm_clip, "warm.mp3")  # loads Whisper
            say(f"{name}: idle probe x{params.idle_runs}")
            meter = CpuMeter([s.pid for s in servers]).start()
            idle = _probe(client, speech_base, inputs.probe, params.idle_runs, params.gap_s)
            cpu_idle = meter.stop()
            loop = BatchLoop(batch_base, inputs.batch_clips, inputs.batch_audio_s, params.loops)
            loop.start()
            time.sleep(params.settle_s)
            say(
                f"{name}: {params.loops} batch loops of {params.clip_s:g} s clips; batch alone "
                f"{params.batch_only_s:g} s"
            )
            tb0 = time.monotonic()
            time.sleep(params.batch_only_s)
            tb1 = c_t0 = time.monotonic()
            meter.start()
            say(f"{name}: probe under load x{params.load_runs}")
            loaded = _probe(client, speech_base, inputs.probe, params.load_runs, params.gap_s)
            cpu_load = meter.stop()
            c_t1 = time.monotonic()
            loop.stop(wait_s=params.drain_s)
        memory = [proc_memory(s.pid) for s in servers]
    finally:
        if loop is not None:
            loop.stop()
        for s in servers:
            s.stop()
    idle_s, load_s = summary(idle), summary(loaded)
    alone = loop.throughput(tb0, tb1)
    with_speech = loop.throughput(c_t0, c_t1)
    duty = sum(loaded) / (c_t1 - c_t0)
    result = {
        "name": name,
        "label": CONFIGS[name]["label"],
        "idle": idle_s,
        "load": load_s,
        "idle_runs": idle,
        "load_runs": loaded,
        "ratio_p95": load_s["p95"] / idle_s["p95"],
        "ratio_p50": load_s["p50"] / idle_s["p50"],
        "batch_jobs_finished": loop.finished(tb0, c_t1),
        "batch_jobs_during_probe": loop.finished(c_t0, c_t1),
        "batch_errors": loop.errors[:5],
        "batch_rate_alone": alone,  # audio seconds transcribed per second
        "batch_rate_with_speech": with_speech,
        "batch_rate_ratio": with_speech / alone if alone else float("nan"),
        "speech_duty": duty,  # share of the probe phase with a speech request in flight
        # shares of all cores: the whole machine, the gateway process(es), other processes
        "cpu_busy": cpu_load["machine"],
        "gateway_cpu": cpu_load["gateway"],
        "others_cpu_load": cpu_load["others"],
        "others_cpu_idle": cpu_idle["others"],
        "peak_rss_mib": sum(m.get("VmHWM", 0.0) for m in memory),
        "processes": len(servers),
    }
    say(
        f"{name}: idle p95 {idle_s['p95']:.2f} s, loaded p95 {load_s['p95']:.2f} s "
        f"({result['ratio_p95']:.2f}x), cores busy {cpu_load['machine']:.0%} (gateway "
        f"{cpu_load['gateway']:.0%}; other processes {cpu_idle['others']:.0%} idle phase, "
        f"{cpu_load['others']:.0%} load phase)"
    )
    return result, inputs


def run_sharing(
    quick: bool = False,
    log_dir: Path | None = None,
    say: Say = _say,
    configs: tuple[str, ...] = tuple(CONFIGS),
) -> dict[str, Any]:
    params = QUICK if quick else FULL
    results: dict[str, Any] = {"params": asdict(params), "quick": quick, "configs": {}}
    inputs = None
    for name in configs:
        result, inputs = run_config(name, params, inputs, log_dir, say)
        results["configs"][name] = result
    if inputs is not None:
        results["probe"] = {"text": inputs.probe, "audio_s": inputs.probe_audio_s}
    results["verdict"] = verdict(results)
    return results


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    cfg = results["configs"]
    out: dict[str, Any] = {}
    pri = cfg.get("priority")
    if pri is None:
        return out
    out["priority_ratio_within_target"] = pri["ratio_p95"] <= TARGET_RATIO
    others = [cfg[n]["ratio_p95"] for n in ("fifo", "two-servers") if n in cfg]
    out["priority_better_than_others"] = all(pri["ratio_p95"] < r for r in others)
    # no core left idle while batch work waits (other processes may take part of the cores)
    out["work_conserving"] = pri["batch_jobs_finished"] > 0 and pri["cpu_busy"] >= 0.9
    out["batch_share_within_target"] = pri["batch_rate_ratio"] >= TARGET_BATCH_SHARE
    # other processes on the machine took a noticeable share of the cores: numbers are noisy
    out["noisy"] = any(max(c["others_cpu_idle"], c["others_cpu_load"]) > 0.15 for c in cfg.values())
    return out


def _f(x: float, fmt: str = ".2f") -> str:
    return "–" if x != x else format(x, fmt)  # NaN shows as a dash


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table of the sharing results (also readable in a terminal)."""
    rows = [
        "| layout | idle p50 | idle p95 | loaded p50 | loaded p95 | p95 ratio | batch jobs done "
        "| batch rate alone | batch rate w/ speech | cores busy | by gateway | by others "
        "(idle / load) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["configs"].items():
        rows.append(
            f"| {name} | {_f(r['idle']['p50'])} s | {_f(r['idle']['p95'])} s "
            f"| {_f(r['load']['p50'])} s | {_f(r['load']['p95'])} s "
            f"| **{_f(r['ratio_p95'])}×** | {r['batch_jobs_finished']} "
            f"| {_f(r['batch_rate_alone'], '.1f')}× | {_f(r['batch_rate_with_speech'], '.1f')}× "
            f"| {_f(r['cpu_busy'], '.0%')} | {_f(r['gateway_cpu'], '.0%')} "
            f"| {_f(r['others_cpu_idle'], '.0%')} / {_f(r['others_cpu_load'], '.0%')} |"
        )
    return "\n".join(rows)


def main(args: Any, settings: Any) -> int:
    out = Path(args.out) if args.out else None
    log_dir = (out.parent if out and out.suffix == ".json" else out) if out else None
    results = run_sharing(args.quick, log_dir)
    print(format_table(results))
    v = results["verdict"]
    print(
        f"\npriority p95 under load <= {TARGET_RATIO}x idle p95: "
        f"{v.get('priority_ratio_within_target')}; better than fifo and two servers: "
        f"{v.get('priority_better_than_others')}; work-conserving: "
        f"{v.get('work_conserving')}"
    )
    if v.get("noisy"):
        print(
            "warning: other processes used more than 15 % of the cores during a phase; "
            "the figures are noisy (see the 'by others' column)"
        )
    print(
        "batch rate = seconds of audio transcribed per wall second (x real time), with the "
        "batch loops alone and while the sentence is asked for; CPU = share of all cores"
    )
    if out:
        path = out if out.suffix == ".json" else out / "sharing.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    return 0
