"""docs/benchmarks-gpu.md from the JSON `python -m benchmarks gpu` writes: every figure beside its
target (issue 9's, for an H200) with met / not met."""

from __future__ import annotations

from typing import Any

T = {  # issue 9's targets on an H200 (seconds, or ratios)
    "speech_p50_s": 0.25,
    "new_length_s": 0.4,
    "sentence_s": 0.15,
    "whisper_48s_s": 1.2,
    "ten_min_rtf": 150.0,
    "sharing_p95_ratio": 1.1,
    "batch_share": 0.8,
    "concurrent8_audio_per_s": 150.0,  # issue 28's, for an H100 or H200
}


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _p(d: Any, key: str = "p50") -> float | None:
    return d.get(key) if isinstance(d, dict) and key in d else None


def _s(x: float | None, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def render(res: dict[str, Any], json_name: str) -> str:
    """docs/benchmarks-gpu.md: every figure with its target and met / not met."""
    rk, rw = res.get("raw_kokoro", {}), res.get("raw_whisper", {})
    gw = res.get("gateway") or res.get("gateway_slots1", {})
    # the raw figure beside the gateway's is that of the file its GPU lane loads
    lane_file = gw.get("status", {}).get("models", {}).get("kokoro", {}).get("variants", {})
    fp16 = isinstance(lane_file, dict) and lane_file.get("gpu") == "model.fp16.onnx"
    flt = rk.get("fp16/HEURISTIC/4" if fp16 else "float/HEURISTIC/4", {})
    rows = []

    def row(what: str, raw: float | None, got: float | None, goal: str, judged: float | None = None,
            note: str = "") -> None:  # fmt: skip
        """A figure in seconds against its goal `T[goal]` (at most); `judged` is the figure
        the goal applies to where that is not `got` itself."""
        x = got if judged is None else judged
        ok = None if x is None else x <= T[goal]
        ratio = f"{got / raw:.2f}x" if got and raw else "–"
        target = f"≤ {T[goal]:g} s{note}"
        rows.append(f"| {what} | {_s(raw)} | {_s(got)} | {ratio} | {target} | {_met(ok)} |")

    full, sent, new = _p(gw.get("speech_full")), _p(gw.get("sentence")), _p(gw.get("new_length"))
    row("speech, 8 s of audio (p50, s)", _p(flt.get("full")), full, "speech_p50_s")
    row("speech, one sentence (p50, s)", _p(flt.get("sentence")), sent, "sentence_s")
    newmax = _p(gw.get("new_length"), "max")
    row("speech, first request of a new length (p50 / max, s)", _p(flt.get("new_length")), new,
        "new_length_s", judged=newmax, note=f" (max {_s(newmax)})")  # fmt: skip
    seq = _p(rw.get("int8_float16", {}).get("seq_48s"))
    row("Whisper base, 48 s clip (p50, s)", seq, _p(gw.get("whisper_48s")), "whisper_48s_s")
    ten = gw.get("ten_min", {}).get("rtf")
    raw_ten = max(
        (
            v.get("rtf", 0)
            for k, v in rw.get("int8_float16", {}).items()
            if k.startswith("batched_") and k.endswith("600s")
        ),
        default=None,
    )
    rows.append(
        f"| Whisper base, 10-minute file (x real time) | {_s(raw_ten, '.0f')} | "
        f"{_s(ten, '.0f')} | – | ≥ {T['ten_min_rtf']:g}x | "
        f"{_met(None if ten is None else ten >= T['ten_min_rtf'])} |"
    )
    out = [
        "# GPU benchmarks",
        "",
        f"Measured on **{res.get('gpu')}**, {res.get('started')}, with "
        f"{res.get('versions')}. Raw libraries and the gateway (over HTTP) ran side by side in "
        "one run, on the same GPU and model files. Command: "
        "`python -m benchmarks gpu --quick --out docs/benchmarks-gpu.json --md docs/benchmarks-gpu.md` "
        f"(raw figures: [`{json_name}`]({json_name})).",
        "",
        "| figure | raw library | gateway | gateway / raw | target | |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## Kokoro variants on CUDA (raw kokoro-onnx, 8 s of audio)",
        "",
        "| model / cuDNN search / intra-op threads | p50 (s) | sentence p50 (s) | new length p50 / max (s) | GPU MiB | WER |",
        "|---|---|---|---|---|---|",
    ]
    if "failed" in rk:
        out.append(f"| (all) | failed: {rk['failed'][:200]} | | | | |")
        rk = {}
    for name, v in rk.items():
        if "full" not in v:
            out.append(f"| {name} | {v.get('failed') or v.get('skipped')} | | | | |")
            continue
        out.append(
            f"| {name} | {_s(_p(v['full']))} | {_s(_p(v['sentence']))} | "
            f"{_s(_p(v['new_length']))} / {_s(_p(v['new_length'], 'max'))} | "
            f"{v.get('gpu_mib')} | {_s(v.get('wer'), '.2f')} |"
        )
    out += [
        "",
        "## Whisper base on CUDA (raw faster-whisper)",
        "",
        "| compute type | 48 s sequential p50 (s) | 48 s batched p50 (s) | 10 min batched: bs 8 / 16 / 32 (x real time) | GPU MiB |",
        "|---|---|---|---|---|",
    ]
    for compute, v in rw.items():
        if not isinstance(v, dict) or "seq_48s" not in v:
            continue
        rtfs = " / ".join(_s(v.get(f"batched_{b}_600s", {}).get("rtf"), ".0f") for b in (8, 16, 32))
        out.append(
            f"| {compute} | {_s(_p(v['seq_48s']))} | {_s(_p(v.get('batched_16_48s')))} | "
            f"{rtfs} | {v.get('gpu_mib')} |"
        )
    out += [
        "",
        "## Sharing: speech while two batch transcriptions loop",
        "",
        f"| gpu_slots | speech p95 idle (s) | p95 under load (s) | ratio (≤ {T['sharing_p95_ratio']:g}x) "
        f"| batch rate loaded / solo (≥ {100 * T['batch_share']:.0f} %) | batch jobs in window |",
        "|---|---|---|---|---|---|",
    ]
    for slots in ("1", "2", "2_prio"):
        v = res.get(f"sharing_slots{slots}", {})
        if "p95_ratio" not in v:
            out.append(f"| {slots} | {v.get('failed', 'not run')} | | | | |")
            continue
        out.append(
            f"| {slots} | {_s(v['idle']['p95'])} | {_s(v['loaded']['p95'])} | "
            f"{v['p95_ratio']:.2f}x ({_met(v['p95_ratio'] <= T['sharing_p95_ratio'])}) | "
            f"{100 * v['batch_share']:.0f} % ({_met(v['batch_share'] >= T['batch_share'])}) | "
            f"{v['batch_jobs_loaded']} |"
        )
    out += [
        "",
        "## Speech concurrency: N requests for the 8 s text at once",
        "",
        f"| kokoro.gpu_concurrency | N | audio s per s | p50 (s) | p95 (s) | "
        f"target (N = 8: ≥ {T['concurrent8_audio_per_s']:g}) |",
        "|---|---|---|---|---|---|",
    ]
    for conc in ("1", "4"):
        v = res.get(f"concurrency{conc}", {})
        if "8" not in v:
            out.append(f"| {conc} | {v.get('failed', 'not run')} | | | | |")
            continue
        for n in ("1", "4", "8"):
            rate = v[n]["audio_per_s"]
            ok = rate >= T["concurrent8_audio_per_s"] if n == "8" else None
            out.append(
                f"| {conc} | {n} | {rate:.1f} | {_s(_p(v[n]['latency']))} | "
                f"{_s(_p(v[n]['latency'], 'p95'))} | {_met(ok)} |"
            )
    st = gw.get("status", {})
    gpu = st.get("gpu") or {}
    out += [
        "",
        "## GPU memory",
        "",
        f"Process GPU memory with both models loaded (gateway, NVML): "
        f"{gpu.get('process_used_mib')} MiB; budgets committed: "
        f"{gpu.get('committed_budget_mib')} MiB (+ reserve {gpu.get('reserve_mib')} MiB).",
        "",
    ]
    for m, v in st.get("models", {}).items():
        out.append(f"- `{m}`: budget {v.get('gpu_budget_mib')} MiB; lanes load {v.get('variants')}")
    return "\n".join(out) + "\n"
