"""Word error rate: the one scorer the tests and the benchmarks use, so a figure in a test and one
in docs/benchmarks.md mean the same thing (checked against jiwer in test_test_harness.py; jiwer
itself is a test extra, never needed to run a benchmark)."""

from __future__ import annotations

import re

__all__ = ["error_rate", "wer", "words"]


def words(text: str) -> list[str]:
    """Lower case, hyphens split, punctuation dropped: what a transcript is scored on."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def error_rate(ref: list[str], hyp: list[str]) -> float:
    """Substitutions + deletions + insertions over the reference's length."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate."""
    return error_rate(words(reference), words(hypothesis))
