"""The figures `python -m benchmarks report` is held to (issue #12 and ARCHITECTURE.md's "Numbers to
beat"), each with its goal and met / not met, computed from the report's raw results."""

from __future__ import annotations

import math
from typing import Any

from .sharing import TARGET_BATCH_SHARE, TARGET_RATIO

OVERHEAD = 1.05
PEAK_GIB = 1.0
BUSY = 0.90


def _case(res: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    return next((c for c in res["overhead"]["cases"] if c["case"].startswith(prefix)), None)


def goals(res: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, goal, measured, met) rows; met is None when the run did not measure it."""
    rows: list[tuple[str, str, str, bool | None]] = []

    def ratio(label: str, prefix: str) -> None:
        c = _case(res, prefix)
        if c is None:
            rows.append((label, f"≤ {OVERHEAD}× raw", "not measured", None))
        else:
            rows.append(
                (
                    label,
                    f"≤ {OVERHEAD}× raw",
                    f"{c['ratio']:.2f}× wall ({_f(c.get('cpu_ratio'))}× CPU)",
                    c["ratio"] <= OVERHEAD,
                )
            )

    ratio("speech, ~10 s of audio, wav", "speech, wav")
    ratio("speech, default mp3", "speech, mp3")
    heard = [c for c in res["overhead"]["cases"] if c["case"].startswith("transcription")]
    for c in heard:
        # no language: held to the raw call that detects with the gateway's settings
        same = " (raw call detecting as the gateway does)" if "detection" in c else ""
        ratio(c["case"] + same, c["case"])
    if not any(c["audio_s"] >= 48 for c in heard):
        ratio("transcription, 48–60 s clip", "transcription, 48–60")
    for c in res.get("accuracy", {}).get("cases", []):
        rows.append(
            (
                f"WER, {c['case']} (gateway vs raw call on the whole file)",
                "≤ raw + 1 point",
                f"{100 * c['gateway_wer']:.1f} % vs "
                f"{100 * c['raw_wer']:.1f} % ({c['points']:+.1f} points)",
                c["met"],
            )
        )
    peak = res["memory_after"].get("VmHWM", 0.0) / 1024
    rows.append(
        (
            "peak RSS after the benchmark workload, both models loaded",
            f"≤ {PEAK_GIB} GiB",
            f"{peak:.2f} GiB",
            peak <= PEAK_GIB,
        )
    )
    pri = res["sharing"]["configs"].get("priority")
    if pri is not None:
        rows.append(
            (
                "speech p95 under 2 looping batch transcriptions / idle p95",
                f"≤ {TARGET_RATIO}×",
                f"{pri['ratio_p95']:.2f}×",
                pri["ratio_p95"] <= TARGET_RATIO,
            )
        )
        share = pri["batch_rate_ratio"]
        rows.append(
            (
                "batch transcription rate while speech runs / its solo rate",
                f"≥ {TARGET_BATCH_SHARE:.0%}",
                _f(share, ".0%"),
                None if math.isnan(share) else share >= TARGET_BATCH_SHARE,
            )
        )
        rows.append(
            (
                "cores busy while batch work waits",
                f"≥ {BUSY:.0%}",
                f"{pri['cpu_busy']:.0%}",
                pri["cpu_busy"] >= BUSY,
            )
        )
    return rows


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None or x != x else format(x, fmt)


def render(res: dict[str, Any]) -> list[str]:
    out = ["## Goals", "", "| figure | goal | measured | |", "|---|---|---|---|"]
    for figure, goal, measured, met in goals(res):
        mark = "–" if met is None else ("met" if met else "**not met**")
        out.append(f"| {figure} | {goal} | {measured} | {mark} |")
    return out + [""]


def render_accuracy(res: dict[str, Any]) -> list[str]:
    acc = res.get("accuracy")
    if not acc:
        return []
    out = [
        "## 6. Accuracy of long transcriptions",
        "",
        "The gateway's transcript (one VAD pass over the upload; its padded speech regions "
        "packed into windows of at most 30 s of speech, each decoded without a second VAD "
        "pass) against the raw call on the whole file (`WhisperModel.transcribe(path, "
        'beam_size=5, vad_filter=True, language="en")`; the gateway also gets `language=en`), both scored by WER against the text spoken '
        "(lower-cased, punctuation dropped; digits are not spelled out, so both sides pay the "
        f"same for `9` vs `nine`). Target: ≤ raw + {acc['target_points']:g} point. Inputs: all "
        "pool sentences with short and long pauses; an hour of 8 kHz MP3 (a tone each minute, "
        "a sentence every five minutes, the last one 30 s before the end). In a gateway of its "
        "own, so the hour's decoded audio is not in the memory figures.",
        "",
        "| input | audio | words | raw WER | gateway WER | points | raw wall | gateway wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in acc["cases"]:
        out.append(
            f"| {c['case']} | {c['audio_s']:.0f} s | {c['words']} | {100 * c['raw_wer']:.1f} % "
            f"| {100 * c['gateway_wer']:.1f} % | {c['points']:+.1f} "
            f"| {c['raw_s']:.1f} s | {c['gateway_s']:.1f} s |"
        )
    return out + [""]


def render_detection(res: dict[str, Any]) -> list[str]:
    """Section 1's notes: requests with no language against the raw call with faster-whisper's
    default detection (what the gateway's surer detection costs), and the section's load."""
    rows: list[str] = []
    detected = [c for c in res["overhead"]["cases"] if "raw_default_median" in c]
    if detected:
        how = detected[0]["detection"]
        rows += [
            "",
            "A request that names no language: the gateway detects on up to "
            f"{how['segments']} 30 s segments of speech, one after another until one is sure "
            f"(p > {how['threshold']:g}); the raw call in the table above detects with the same "
            "settings. The same gateway runs against the raw call with faster-whisper's "
            "default detection (one 30 s segment, p > 0.5), interleaved with them; the "
            "difference is what the surer detection costs (docs/cpu-path.md, Issue 33):",
            "",
            "| case | raw wall, default detection | gateway wall | wall ratio "
            "| raw CPU, default detection | CPU ratio |",
            "|---|---|---|---|---|---|",
        ]
        rows += [
            f"| {c['case']} | {c['raw_default_median']:.2f} s | {c['gateway_median']:.2f} s "
            f"| {c['ratio_default']:.2f}× | {c['raw_default_cpu_median']:.2f} s "
            f"| {_f(c['cpu_ratio_default'])}× |"
            for c in detected
        ]
    load = res["overhead"].get("load_before"), res["overhead"].get("load_after")
    if load[0] and load[1]:
        rows += [
            "",
            "Load average (1/5/15 min) at the start of this section: "
            + " / ".join(f"{x:.2f}" for x in load[0])
            + "; at its end: "
            + " / ".join(f"{x:.2f}" for x in load[1])
            + ".",
        ]
    return rows
