"""The live-transcription benchmark's pure half (benchmarks/live_figures.py) on made-up events:
which spoken word each delta carried and when, WER over turns, goal verdicts, the section as a
reader reads it. The run itself (`python -m benchmarks.live --quick`) needs a gateway process
and minutes; it is not a test."""

from __future__ import annotations

import math

import pytest

from benchmarks import live_figures as fig

T0 = 100.0  # perf_counter of the turn's first sample
WORDS = [fig.Word("please", 0.5), fig.Word("turn", 0.9), fig.Word("the", 1.1),
         fig.Word("volume", 1.6), fig.Word("down", 2.0)]  # fmt: skip


def test_each_word_is_timed_from_its_end_to_the_delta_that_completes_it() -> None:
    # "volume" is cut across two deltas: it is there when its last piece is
    deltas = [(T0 + 1.5, "Please turn"), (T0 + 2.6, " the vol"), (T0 + 3.0, "ume down.")]
    lat = fig.word_latencies(WORDS, deltas, T0, speech_end_s=2.0)
    assert lat.seconds == pytest.approx([1.0, 0.6, 1.5, 1.4, 1.0])
    assert (lat.missed, lat.early) == (0, 2)  # please, turn came while the speaker spoke


def test_a_word_dropped_or_misheard_is_missed_and_the_others_keep_their_own_times() -> None:
    deltas = [(T0 + 1.5, "Please turn"), (T0 + 2.5, " volume"), (T0 + 3.5, " town")]
    lat = fig.word_latencies(WORDS, deltas, T0, speech_end_s=2.0)
    assert lat.seconds == pytest.approx([1.0, 0.6, 0.9])  # please, turn, volume
    assert lat.missed == 2  # "the" left out, "down" heard as "town"


def test_align_skips_insertions_and_pairs_repeated_words_in_order() -> None:
    assert fig.align(["a", "b", "c"], ["a", "x", "b", "c"]) == [(0, 0), (1, 2), (2, 3)]
    # the longest matching, not the first equal word: "the" pairs with the second one
    ref = ["the", "cat", "sat", "on", "the", "mat"]
    assert fig.align(ref, ["cat", "on", "the", "mat"]) == [(1, 0), (3, 1), (4, 2), (5, 3)]
    assert fig.align(["x", "y"], ["y", "x", "y"]) == [(0, 1), (1, 2)]


def test_wer_counts_every_reference_word_once_over_all_turns() -> None:
    refs = ["The train leaves at four.", "One two three four five six seven eight nine ten."]
    hyps = ["the train leaves at", "one two three four five six seven eight nine ten"]
    assert fig.corpus_wer(refs, hyps) == pytest.approx(1 / 15)  # not (1/5 + 0) / 2
    assert math.isnan(fig.corpus_wer([], []))


def test_latency_summary_pools_the_words_of_all_turns() -> None:
    parts = [fig.Latency([0.5, 1.0, 1.5], 1, 2), fig.Latency([2.0, 3.0], 0, 0)]
    s = fig.latency_summary(parts)
    assert (s["n"], s["p50"], s["missed"]) == (5, 1.5, 1)
    assert s["p95"] == pytest.approx(2.8)  # linear between 2.0 and 3.0 at 0.95 * 4
    assert s["early_share"] == pytest.approx(2 / 5)


def test_verdicts_and_goals() -> None:
    assert fig.met(2.0, 2.0) == "met"  # the goal is "at most"
    assert fig.met(2.01, 2.0) == "**not met**"
    assert fig.met(0.75, 0.75, at_most=False) == "met"
    assert fig.met(0.74, 0.75, at_most=False) == "**not met**"
    assert fig.met(float("nan"), 1.0) == "–"
    assert fig.latency_goal("whisper-tiny.en", gpu=False) == 2.0
    assert fig.latency_goal("whisper-base", gpu=False) == 3.0
    assert fig.latency_goal("whisper-base", gpu=True) == 1.0
    assert fig.latency_goal("whisper-small", gpu=False) is None


def _latency(p50: float) -> dict[str, float]:
    return {"n": 40, "p50": p50, "p95": p50 + 1, "missed": 2, "early_share": 0.6}


RESULT = {
    "quick": False,
    "gpu": False,
    "turns": 10,
    "sentences": 20,
    "chunk_ms": 100,
    "command": "python -m benchmarks.live --out /tmp/x",
    "machine": {"cpu": "Test CPU", "nproc": 2, "ram_gib": 7.8},
    "load": {"before": [0.1, 0.2, 0.3], "after": [1.5, 0.9, 0.4]},
    "models": {
        "whisper-tiny.en": {
            "latency": _latency(1.8),
            "wer_live": 0.05,
            "wer_off": 0.045,
            "mismatched_turns": 0,
        },
        "whisper-base": {
            "latency": _latency(3.2),
            "wer_live": 0.06,
            "wer_off": 0.04,
            "mismatched_turns": 1,
        },
    },
    "isolation": {"chat_ratio": 1.07, "batch_share": 0.7},
}


def _rows(md: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in md.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_the_section_shows_each_figure_with_its_goal_and_verdict() -> None:
    md = "\n".join(fig.render(RESULT))
    rows = _rows(md)
    assert rows["word → delta, median, `whisper-tiny.en`"] == ["1.80 s", "≤ 2 s", "met"]
    assert rows["word → delta, median, `whisper-base`"] == ["3.20 s", "≤ 3 s", "**not met**"]
    assert rows["word → delta, p95, `whisper-base`"] == ["4.20 s", "–", "–"]
    assert rows["WER live on / off, `whisper-tiny.en`"] == [
        "5.0 % / 4.5 % (+0.5 points)", "≤ off + 1 point", "met"]  # fmt: skip
    assert rows["WER live on / off, `whisper-base`"][2] == "**not met**"  # 2 points
    assert rows["chat sentence p95, live + 2 batch / idle"] == ["1.07x", "≤ 1.1x", "met"]
    assert rows["batch throughput, with live + chat / alone"] == ["70 %", "≥ 75 %", "**not met**"]
    assert "`python -m benchmarks.live --out /tmp/x`" in md
    assert "Test CPU, 2 cores" in md and "no GPU lane" in md
    assert "before 0.10 / 0.20 / 0.30, after 1.50 / 0.90 / 0.40" in md
    gpu = _rows("\n".join(fig.render({**RESULT, "gpu": True})))
    assert gpu["word → delta, median, `whisper-base`"][1:] == ["≤ 1 s", "**not met**"]
