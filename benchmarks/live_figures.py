"""The pure half of the live-transcription benchmark (`benchmarks/live.py`): which spoken word
each delta carried and when, word error rates, goal verdicts, and the Markdown section. No
server, no clock: what is here is unit-tested on made-up events."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tests.support.wer import error_rate

from .client import summary

# Goals of issue 32. Latency: the median from the end of a word to the delta that first carries
# it, on a 2-core CPU per model, on any model where Whisper runs on a GPU.
CPU_LATENCY_GOAL_S = {"whisper-tiny.en": 2.0, "whisper-base": 3.0}
GPU_LATENCY_GOAL_S = 1.0
WER_POINTS = 1.0  # live mode's WER at most this many points above live mode off
CHAT_RATIO = 1.1  # chat sentence p95 with a live session and two batch loops / idle p95
BATCH_SHARE = 0.75  # batch throughput with them / batch alone

_TOKEN = re.compile(r"[a-z0-9']+")
Deltas = list[tuple[float, str]]  # (arrival, perf_counter seconds; the delta's text)


def _fold(text: str) -> str:
    """Lower case, one character for one so that positions hold, and everything but ASCII
    letters, digits and apostrophes a space: the words of tests/support/wer.py."""
    out = []
    for c in text:
        low = c.lower()
        keep = len(low) == 1 and low.isascii() and (low.isalnum() or low == "'")
        out.append(low if keep else " ")
    return "".join(out)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(_fold(text))


@dataclass(frozen=True)
class Word:
    """A spoken word (folded as `tokens` folds it) and where it ends in its turn's audio."""

    text: str
    end_s: float


def spoken_words(timed: list[dict[str, Any]], offset_s: float) -> list[Word]:
    """The speech API's `words` ({word, start, end}) as tokens at `offset_s` into a turn. A
    written word that folds into several (`twenty-four`) gives each one its end."""
    return [Word(tok, offset_s + float(w["end"])) for w in timed for tok in tokens(str(w["word"]))]


def delta_words(deltas: Deltas) -> list[tuple[str, float]]:
    """The words the deltas spell joined in order, each with the arrival of the delta that
    completed it (a word cut across two deltas is there once its last piece is)."""
    text = "".join(d for _, d in deltas)
    at: list[float] = []
    for t, d in deltas:
        at += [t] * len(d)
    return [(m.group(), at[m.end() - 1]) for m in _TOKEN.finditer(_fold(text))]


def align(ref: list[str], hyp: list[str]) -> list[tuple[int, int]]:
    """The longest in-order matching of equal words, as (ref index, hyp index) pairs: a word
    misheard or left out has no pair, and a repeated word pairs with its own occurrence."""
    n, m = len(ref), len(hyp)
    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: matches in ref[i:], hyp[j:]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            same = ref[i] == hyp[j]
            best[i][j] = best[i + 1][j + 1] + 1 if same else max(best[i + 1][j], best[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if ref[i] == hyp[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


@dataclass(frozen=True)
class Latency:
    seconds: list[float]  # per spoken word a delta carried: its arrival - the word's end
    missed: int  # spoken words no delta carried (misheard, or never sent)
    early: int  # of those carried, words sent before the turn's speech ended


def word_latencies(words: list[Word], deltas: Deltas, t0: float, speech_end_s: float) -> Latency:
    """`t0`: when the turn's first sample was (perf_counter), so a word ended at t0 + end_s."""
    hyp = delta_words(deltas)
    pairs = align([w.text for w in words], [h for h, _ in hyp])
    seconds = [hyp[j][1] - (t0 + words[i].end_s) for i, j in pairs]
    early = sum(1 for _, j in pairs if hyp[j][1] < t0 + speech_end_s)
    return Latency(seconds, len(words) - len(pairs), early)


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """All errors over all reference words (a long turn weighs more than a short one)."""
    errors = words = 0.0
    for ref, hyp in zip(references, hypotheses, strict=True):
        r = tokens(ref)
        errors += error_rate(r, tokens(hyp)) * len(r)
        words += len(r)
    return errors / words if words else math.nan


def latency_summary(parts: list[Latency]) -> dict[str, Any]:
    seconds = [s for p in parts for s in p.seconds]
    carried = len(seconds)
    early = sum(p.early for p in parts)
    return {**summary(seconds), "missed": sum(p.missed for p in parts),
            "early_share": early / carried if carried else math.nan}  # fmt: skip


# -- verdicts ----------------------------------------------------------------------------------


def met(value: float | None, goal: float, at_most: bool = True) -> str:
    """`met` / `**not met**`, or `–` when nothing was measured."""
    if value is None or value != value:
        return "–"
    ok = value <= goal if at_most else value >= goal
    return "met" if ok else "**not met**"


def latency_goal(model: str, gpu: bool) -> float | None:
    return GPU_LATENCY_GOAL_S if gpu else CPU_LATENCY_GOAL_S.get(model)


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None or x != x else format(x, fmt)


def goal_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, goal, verdict) for each figure of the section."""
    rows = []
    gpu = bool(res.get("gpu"))
    for model, r in res["models"].items():
        lat, goal = r["latency"], latency_goal(model, gpu)
        goal_text = "–" if goal is None else f"≤ {goal:g} s"
        verdict = "–" if goal is None else met(lat["p50"], goal)
        rows += [
            (f"word → delta, median, `{model}`", f"{_f(lat['p50'], '.2f')} s", goal_text, verdict),
            (f"word → delta, p95, `{model}`", f"{_f(lat['p95'], '.2f')} s", "–", "–"),
        ]
        on, off = r["wer_live"], r["wer_off"]
        points = 100 * (on - off)
        rows.append((f"WER live on / off, `{model}`",
                     f"{_f(100 * on, '.1f')} % / {_f(100 * off, '.1f')} % "
                     f"({_f(points, '+.1f')} points)",
                     f"≤ off + {WER_POINTS:g} point", met(points, WER_POINTS)))  # fmt: skip
    iso = res.get("isolation")
    if iso:
        rows.append(("chat sentence p95, live + 2 batch / idle", f"{_f(iso['chat_ratio'], '.2f')}x",
                     f"≤ {CHAT_RATIO:g}x", met(iso["chat_ratio"], CHAT_RATIO)))  # fmt: skip
        rows.append(("batch throughput, with live + chat / alone",
                     f"{_f(100 * iso['batch_share'], '.0f')} %", f"≥ {100 * BATCH_SHARE:.0f} %",
                     met(iso["batch_share"], BATCH_SHARE, at_most=False)))  # fmt: skip
    return rows


def _machine(res: dict[str, Any]) -> str:
    m = res.get("machine", {})
    where = "Whisper on the GPU lane" if res.get("gpu") else "no GPU lane (CPU)"
    return f"{m.get('cpu', '?')}, {m.get('nproc', '?')} cores, {m.get('ram_gib', '?')} GiB; {where}"


def render(res: dict[str, Any]) -> list[str]:
    """The report's section: each figure with its goal and verdict, then what it was run on."""
    b, a = res["load"]["before"], res["load"]["after"]
    quick = " (quick run: a smoke test of the harness, not figures)" if res.get("quick") else ""
    details = [
        f"- `{model}`: {r['latency']['n']} words carried, {r['latency']['missed']} missed, "
        f"{_f(100 * r['latency']['early_share'], '.0f')} % of them before the speaker stopped; "
        f"turns whose deltas joined differ from `completed`: {r['mismatched_turns']}"
        for model, r in res["models"].items()
    ]
    return [
        f"## Live transcription{quick}",
        "",
        f"{res['turns']} turns of two sentences each ({res['sentences']} sentences spoken by the "
        "gateway's TTS, word ends from its `timestamps`) appended to a Realtime transcription "
        f"session in {res['chunk_ms']} ms chunks paced by the clock, server VAD. Latency: from "
        "the end of each word in the audio to the first delta carrying it. WER: the "
        "`completed` transcripts, live mode on and off, same audio. Isolation: the chat sentence "
        "(speech, interactive) idle, then while two batch transcriptions loop and one live "
        "session streams; batch throughput against the loops alone.",
        "",
        "| figure | measured | goal | verdict |",
        "|---|---|---|---|",
        *[f"| {f} | {v} | {g} | {m} |" for f, v, g, m in goal_rows(res)],
        "",
        *details,
        f"- Command: `{res['command']}`; machine: {_machine(res)}.",
        f"- Load average (1/5/15 min) before {b[0]:.2f} / {b[1]:.2f} / {b[2]:.2f}, after "
        f"{a[0]:.2f} / {a[1]:.2f} / {a[2]:.2f}.",
        "",
    ]
