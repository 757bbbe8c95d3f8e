"""docs/benchmarks-gpu.md's new parts, rendered from made-up numbers (no GPU): the raw figure
beside the gateway's is that of the file its GPU lane loads, and speech concurrency is judged
against 150 s of audio per second at 8 requests."""

from __future__ import annotations

from typing import Any

from benchmarks.gpu_report import render


def _res(lane_file: str, rate8: float) -> dict[str, Any]:
    def raw(p50: float) -> dict[str, Any]:
        return {"full": {"p50": p50}, "sentence": {"p50": p50 / 2},
                "new_length": {"p50": p50, "max": p50}, "gpu_mib": 500, "wer": 0.0}  # fmt: skip

    status = {"models": {"kokoro": {"variants": {"gpu": lane_file}}}}
    rate = {"1": 40.0, "4": 120.0, "8": rate8}
    return {
        "gateway": {"speech_full": {"p50": 0.2}, "status": status},
        "raw_kokoro": {"float/HEURISTIC/4": raw(0.3), "fp16/HEURISTIC/4": raw(0.1)},
        "concurrency4": {n: {"latency": {"p50": 0.2, "p95": 0.3}, "audio_per_s": r}
                         for n, r in rate.items()},  # fmt: skip
    }


def _line(md: str, start: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(start))


def test_raw_speech_figure_is_the_lane_files_own() -> None:
    fp16 = _line(render(_res("model.fp16.onnx", 200.0), "x.json"), "| speech, 8 s")
    assert "| 0.100 | 0.200 | 2.00x |" in fp16
    flt = _line(render(_res("model.gpu.onnx", 200.0), "x.json"), "| speech, 8 s")
    assert "| 0.300 | 0.200 | 0.67x |" in flt


def test_concurrency_rows_and_the_goal_at_eight_requests() -> None:
    md = render(_res("model.fp16.onnx", 200.0), "x.json")
    assert _line(md, "| 4 | 8 |").endswith("| met |")
    assert _line(md, "| 4 | 4 |").endswith("| n/a |")
    assert "| 1 | not run |" in md
    slow = render(_res("model.fp16.onnx", 100.0), "x.json")
    assert _line(slow, "| 4 | 8 |").endswith("| **not met** |")
